"""Benchmark 2: SSH fan-out, `verify` (connect, authenticate, run `true`) on N loopback nodes.

    python bench/ssh_fanout.py [--sizes 10,50,100] [--repeat 3] [--parallel 32] [--no-write]

Nodes are real OpenSSH sshd processes, one per node, each on its own 127.0.0.1 port with
its own ed25519 host key (needs root and /usr/sbin/sshd: `apt-get install -y openssh-server`).
All tools use the same user key, the same known_hosts file (every host key known up front)
and the same concurrency P = min(N, --parallel), 32 by default as ess's ssh_parallel:

* ess: ``ess_ssh.check.check_nodes`` (the verify plugin) with default settings but P;
* serial: the same with ssh_parallel=1;
* xargs: ``xargs -P P ssh -o BatchMode=yes -i KEY -o UserKnownHostsFile=FILE ... true``;
* parallel-ssh 2.16 (``ParallelSSHClient``, libssh2), run from its own venv
  (/tmp/pssh-venv, made if missing: ``pip install parallel-ssh`` there, so the shared
  environment is left alone); parallel-ssh does not check host keys;
* the node user is ``essbench`` (created for the run with shell /bin/sh, removed after):
  root's bash would source ~/.bashrc (pyenv init, ~0.35 s per command) on every node;
* floor: the serial time (N handshakes back to back) divided by the cores.

Only the fan-out is timed (no interpreter start, no imports) for ess and parallel-ssh; the
xargs figure includes one `ssh` process per node, which is how that tool works. The sshd
processes share the 2 cores with the client. Rewrites the ssh section of
docs/benchmarks.md and docs/bench_ssh_fanout.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

from ess.testing.openssh import OpenSshd  # noqa: E402

PSSH_VENV = Path("/tmp/pssh-venv")
PSSH_DRIVER = """
import json, sys, time
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
ports, key, user, pool = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
client = ParallelSSHClient(["127.0.0.1"] * len(ports), user=user, pkey=key, pool_size=pool,
                           host_config=[HostConfig(port=p, user=user, private_key=key) for p in ports],
                           timeout=30, num_retries=1)
start = time.perf_counter()
output = client.run_command("true", stop_on_errors=False)
client.join(output)
elapsed = time.perf_counter() - start
codes = [o.exit_code for o in output]
print(json.dumps({"seconds": elapsed, "ok": sum(1 for c in codes if c == 0), "codes": codes[:5]}))
"""


BENCH_USER = "essbench"


def ensure_user(home: Path) -> bool:
    """A login user whose shell is /bin/sh; True if this run created it (and must remove it).

    root's shell here is bash, and bash run by sshd sources ~/.bashrc even for `ssh host true`;
    root's .bashrc runs `pyenv init`, about 0.35 s of node-side CPU per command, which would
    swamp the client-side figures this benchmark is about.
    """
    if subprocess.run(["id", BENCH_USER], capture_output=True, check=False).returncode == 0:
        return False
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", BENCH_USER], check=True)
    subprocess.run(["usermod", "-p", "*", BENCH_USER], check=True)  # unlocked for key logins, no password
    return True


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by this process and by the sshd listeners with their reaped children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def ensure_pssh() -> Path | None:
    python = PSSH_VENV / "bin" / "python"
    if not python.exists():
        print("making /tmp/pssh-venv with parallel-ssh (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PSSH_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "parallel-ssh"], check=False)
    probe = subprocess.run([str(python), "-c", "import pssh"], capture_output=True, check=False)
    return python if probe.returncode == 0 else None


def pssh_version(python: Path | None) -> str:
    if python is None:
        return "parallel-ssh not available"
    out = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version as v;print(v('parallel-ssh'), v('ssh2-python'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return f"parallel-ssh {out[0]} (ssh2-python {out[1]})" if len(out) == 2 else "parallel-ssh ?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,50,100")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=32, help="concurrency for every tool (capped at N)")
    parser.add_argument("--serial-repeat", type=int, default=1, help="runs of the serial loop per size")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not (os.access("/usr/sbin/sshd", os.X_OK) and os.geteuid() == 0):
        sys.exit("needs root and /usr/sbin/sshd (apt-get install -y openssh-server)")
    sizes = [int(s) for s in args.sizes.split(",")]
    home = Path(tempfile.mkdtemp(prefix="ess-bench-ssh-"))
    home.chmod(0o755)  # sshd reads each node's authorized_keys as the node user
    os.environ["ESS_HOME"] = str(home / "ess_home")
    os.makedirs("/run/sshd", exist_ok=True)
    from ess.models import RUNNING, Access, Node
    from ess.progress import Progress
    from ess.settings import resolve
    from ess_ssh.check import check_nodes
    from ess_ssh.hostkeys import known_hosts_path
    from ess_ssh.plugin import SETTINGS

    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = (home / "id_ed25519.pub").read_text().strip()
    pssh = ensure_pssh()
    created_user = False
    load_before = report.load_average()
    servers: list[OpenSshd] = []
    results: dict[int, dict[str, float]] = {}
    loads: dict[int, str] = {}
    try:
        created_user = ensure_user(home)
        servers = [OpenSshd(home / f"s{i}", pub, wait=False) for i in range(max(sizes))]
        for server in servers:
            server.wait()
        access = Access(backend="bench", cluster="fanout", username=BENCH_USER, key_file=key)
        known = known_hosts_path("bench", "fanout")
        known.write_text("".join(f"[127.0.0.1]:{s.port} {s.host_key_line}\n" for s in servers))
        known.chmod(0o600)

        pids = [s.proc.pid for s in servers]
        cpu_used: dict[str, float] = {}

        def ess_run(nodes: list[Node], parallel: int, cpu_label: str = "") -> float:
            settings = resolve("bench", {spec.key: spec for spec in SETTINGS}, cli={"ssh_parallel": parallel}, env={})
            cpu_start = cpu_seconds(pids)
            start = time.perf_counter()
            out = check_nodes(nodes, access, settings, Progress(stream=io.StringIO(), tty=False))
            elapsed = time.perf_counter() - start
            if cpu_label:
                time.sleep(0.3)  # let the listeners reap their per-connection children
                cpu_used[cpu_label] = cpu_seconds(pids) - cpu_start
            bad = [r.message for r in out if not r.ok]
            if bad:
                raise RuntimeError(f"ess: {len(bad)} failed: {bad[:3]}")
            return elapsed

        def xargs_run(ports: list[int], parallel: int) -> float:
            argv = [
                "xargs",
                "-P",
                str(parallel),
                "-I{}",
                "ssh",
                "-q",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                f"UserKnownHostsFile={known}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
                str(key),
                "-F",
                "/dev/null",
                "-p",
                "{}",
                f"{BENCH_USER}@127.0.0.1",
                "true",
            ]
            start = time.perf_counter()
            done = subprocess.run(
                argv, input="".join(f"{p}\n" for p in ports), text=True, capture_output=True, check=False
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"xargs ssh exited {done.returncode}: {done.stderr[-500:]}")
            return elapsed

        def pssh_run(ports: list[int], parallel: int) -> float:
            assert pssh is not None
            done = subprocess.run(
                [str(pssh), "-c", PSSH_DRIVER, json.dumps(ports), str(key), BENCH_USER, str(parallel)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"parallel-ssh: {done.stderr[-800:]}")
            reply = json.loads(done.stdout)
            if reply["ok"] != len(ports):
                raise RuntimeError(f"parallel-ssh: only {reply['ok']} of {len(ports)} ok: {reply['codes']}")
            return float(reply["seconds"])

        for n in sizes:
            chosen = servers[:n]
            nodes = [Node(f"n{i}", RUNNING, address="127.0.0.1", port=s.port) for i, s in enumerate(chosen)]
            ports = [s.port for s in chosen]
            parallel = min(n, args.parallel)
            runs: dict[str, list[float]] = {"ess": [], "xargs": [], "pssh": [], "serial": []}
            ess_run(nodes[:2], 2)  # warm: paramiko import and first-use costs are not per-run costs
            for i in range(args.repeat):
                runs["ess"].append(ess_run(nodes, parallel, "ess" if i == 0 else ""))
                runs["xargs"].append(xargs_run(ports, parallel))
                if pssh is not None:
                    runs["pssh"].append(pssh_run(ports, parallel))
            for _ in range(args.serial_repeat):
                runs["serial"].append(ess_run(nodes, 1, "serial"))
            results[n] = {k: statistics.median(v) for k, v in runs.items() if v}
            results[n]["ess_min"], results[n]["ess_max"] = min(runs["ess"]), max(runs["ess"])
            results[n]["serial_cpu"], results[n]["ess_cpu"] = cpu_used["serial"], cpu_used["ess"]
            loads[n] = report.load_average()
            print(f"N={n}: " + ", ".join(f"{k} {v:.2f}s" for k, v in results[n].items()), file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
        if created_user:
            subprocess.run(["userdel", BENCH_USER], check=False)
    load_after = report.load_average()
    cores = os.cpu_count() or 1
    rows, verdicts = [], []
    for n, r in results.items():
        floor = r["serial"] / cores
        cpu_floor = r["serial_cpu"] / cores
        pssh_s = r.get("pssh")
        rows.append(
            [
                str(n),
                f"{r['ess']:.2f} ({r['ess_min']:.2f}-{r['ess_max']:.2f})",
                f"{r['serial']:.2f}",
                f"{r['xargs']:.2f}",
                f"{pssh_s:.2f}" if pssh_s else "n/a",
                f"{floor:.2f}",
                f"{r['ess'] / floor:.2f}x",
                f"{cpu_floor:.2f}",
                f"{r['ess'] / cpu_floor:.2f}x",
                f"{r['ess_cpu'] / (r['ess'] * cores):.0%}",
                f"{n / r['ess']:.0f}",
                loads[n],
            ]
        )
        verdicts.append(
            f"- N={n}: ess {r['ess']:.2f} s = {r['ess'] / floor:.2f}x the floor "
            f"({'MET' if r['ess'] <= 1.5 * floor else 'MISSED'} <= 1.5x), {r['ess'] / cpu_floor:.2f}x the CPU "
            f"floor ({'MET' if r['ess'] <= 1.5 * cpu_floor else 'MISSED'} <= 1.5x); "
            f"{'faster' if r['ess'] < r['xargs'] else 'SLOWER'} than xargs ssh ({r['xargs']:.2f} s); "
            + (
                f"{'faster' if r['ess'] < pssh_s else 'SLOWER'} than parallel-ssh ({pssh_s:.2f} s)."
                if pssh_s
                else "parallel-ssh not measured."
            )
        )
    header = [
        "N",
        "ess s (min-max)",
        "serial ess s",
        "xargs -P ssh s",
        "parallel-ssh s",
        "floor s (serial/cores)",
        "ess / floor",
        "CPU floor s",
        "ess / CPU floor",
        "CPU busy during ess",
        "ess nodes/s",
        "load avg after",
    ]
    text_table = report.table(header, rows)
    print(text_table)
    print("\n".join(verdicts))
    if args.no_write:
        return
    png = report.DOCS / "bench_ssh_fanout.png"
    plot(results, cores, png)
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    info = report.machine(
        ["paramiko", "cryptography"],
        f"{ssh_version}; {pssh_version(pssh)}. Load average (1, 5, 15 min) before: {load_before}; after: {load_after}.",
    )
    body = "\n".join(
        [
            "## 2. SSH fan-out: verify N loopback OpenSSH nodes",
            "",
            info,
            "",
            f"Medians of {args.repeat} runs (serial: {args.serial_repeat}); every tool at concurrency "
            f"min(N, {args.parallel}), the same key and known_hosts file, command `true`. The N sshd processes "
            f"(and every per-connection sshd child) share the machine's {cores} cores with the client, so the "
            "server half of every handshake is paid here too; against remote nodes the client only pays its half.",
            "",
            "Two floors: *floor* is the brief's, the serial loop's wall time / cores. The serial loop is partly "
            "idle (each step waits for the other process), so it overstates the work; the *CPU floor* is the CPU "
            "seconds the serial run actually used (this process plus every sshd and its children, from "
            "/proc/PID/stat) / cores, the least time N verifications can take on this machine. *CPU busy* is "
            "the CPU seconds of one parallel ess run / (wall time x cores).",
            "",
            text_table,
            "",
            *verdicts,
            "",
            "![SSH fan-out seconds against N](bench_ssh_fanout.png)",
        ]
    )
    report.write_section("ssh", body)


def plot(results: dict[int, dict[str, float]], cores: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(sizes, [results[n]["ess"] for n in sizes], "o-", label="ess verify (paramiko threads)")
    ax.plot(sizes, [results[n]["xargs"] for n in sizes], "s--", label="xargs -P + OpenSSH ssh")
    if all("pssh" in results[n] for n in sizes):
        ax.plot(sizes, [results[n]["pssh"] for n in sizes], "^--", label="parallel-ssh (libssh2)")
    ax.plot(sizes, [results[n]["serial"] for n in sizes], "x:", label="serial loop (ess, 1 at a time)")
    floor = [results[n]["serial"] / cores for n in sizes]
    cpu_floor = [results[n]["serial_cpu"] / cores for n in sizes]
    ax.plot(sizes, floor, "-", color="grey", label=f"floor: serial wall / {cores} cores")
    ax.plot(sizes, cpu_floor, "-", color="black", label=f"CPU floor: serial CPU s / {cores} cores")
    ax.plot(sizes, [1.5 * f for f in cpu_floor], ":", color="black", label="goal: 1.5x CPU floor")
    ax.set(xlabel="nodes N", ylabel="seconds (median)", title="SSH verify on loopback sshd (2 cores shared)")
    ax.legend(fontsize=8)
    report.save_plot(fig, png)


if __name__ == "__main__":
    main()
