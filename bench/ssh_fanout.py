"""Benchmark 2: SSH fan-out on N loopback endpoints (verify, exec, push) and SSH readiness.

    python bench/ssh_fanout.py [--sizes 100,500,1000] [--repeat 3] [--parallel 32]
                               [--commands verify,true,exec1m,push10m] [--no-readiness] [--no-write]

Endpoints: :mod:`sshd_farm`, ceil(N / 16) OpenSSH sshd listeners with 16 ``addr:port`` each
on 127.77.x.y (one shared host key, every ``[addr]:port`` in known_hosts). Needs root and
/usr/sbin/sshd (``apt-get install -y openssh-server``). The node user is ``essbench``
(made for the run with shell /bin/sh, removed after: root's bash would source ~/.bashrc on
every command).

Every tool runs at the same concurrency P = min(N, --parallel) (32, ess's ssh_parallel):

* ess: the real CLI through the ``hosts`` backend (``ess instance hosts verify|exec|push
  --cluster fanN``), strict host-key checking on (``ESS_STRICT_HOST_KEYS=1``), run in-process
  by a small child (:data:`ESS_DRIVER`) with its output to /dev/null. The child measures
  itself: wall time of the command (interpreter start and the import of ess/paramiko not
  included), CPU seconds (getrusage), peak RSS (VmHWM of the child itself, not a
  ru_maxrss inherited from this bigger parent) and peak open fds (a thread counting
  /proc/self/fd every 5 ms);
* parallel-ssh (``ParallelSSHClient``, libssh2, pool_size=P) from its own venv
  (/tmp/pssh-venv, made if missing with ``pip install parallel-ssh``), measured the same
  way; it does not check host keys;
* CPU floor: the CPU seconds of ``ess ... verify --parallel 1`` (client plus every sshd
  and its per-connection children, from /proc/PID/stat) / cores: the least time N
  verifications can take on this machine.

Commands: ``verify`` (connect, authenticate, run ``true``), ``exec -- true``, ``exec`` of a
command printing 1 MiB of 80-byte lines per node, ``push`` of a 10 MB file (every node
writes the same path: one machine behind all endpoints). Readiness (N=100, one listener per
endpoint, started at staggered times after the check starts, nodes marked just launched as on
EC2): how long after the last endpoint starts listening (kernel listen table, polled every
5 ms) does the ssh plugin's ``ess_check_nodes`` return. Rewrites the ssh section of
docs/benchmarks.md and docs/bench_ssh_fanout.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from sshd_farm import Farm, FarmCost, listening  # noqa: E402

PSSH_VENV = Path("/tmp/pssh-venv")
BENCH_USER = "essbench"
LINE = "0123456789" * 7 + "012345678"  # 79 characters + newline = 80 bytes a line
EXEC_1M = f"yes {LINE} | head -c 1048576"
PUSH_BYTES = 10 * 1000 * 1000

#: What every child measures about itself (the command runs between the two clocks).
SAMPLER = """
import json, os, resource, sys, threading, time
peak_fds = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak_fds[0] = max(peak_fds[0], len(os.listdir("/proc/self/fd")))
        stop.wait(0.005)
threading.Thread(target=sample, daemon=True).start()
def finish(path, started, cpu0, extra):
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
    extra.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime - cpu0, rss_mb=int(hwm) / 1024,
                 fds=peak_fds[0], end=time.time())
    with open(path, "w") as out:
        json.dump(extra, out)
"""

ESS_DRIVER = (
    SAMPLER
    + """
import paramiko, cryptography  # imports are not per-command costs
import ess.cli
path, argv = sys.argv[1], sys.argv[2:]
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = usage.ru_utime + usage.ru_stime
started = time.perf_counter()
code = ess.cli.run(argv)
finish(path, started, cpu0, {"code": code})
"""
)

#: SSH readiness: the ssh plugin's ess_check_nodes hook on nodes launched just now (as EC2
#: reports a fresh instance: refusals are retried, not final), strict host keys, P = 32.
READY_DRIVER = (
    SAMPLER
    + """
import io
from datetime import datetime, timezone
from pathlib import Path
import paramiko, cryptography
from ess.models import RUNNING, Access, Node
from ess.plugins import get_plugin_manager
from ess.progress import Progress
from ess.settings import resolve
from ess_ssh.plugin import SETTINGS
path, endpoints, key, user = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
now = datetime.now(timezone.utc)
nodes = [Node(f"{a}:{p}", RUNNING, address=a, port=p, launched_at=now) for a, p in endpoints]
access = Access("hosts", "ready", user, Path(key))
cli = {"ssh_parallel": 32, "ssh_timeout": 120.0, "strict_host_keys": True}
settings = resolve("hosts", {spec.key: spec for spec in SETTINGS}, cli=cli, env={})
hook = get_plugin_manager().hook.ess_check_nodes
open(os.environ["ESS_BENCH_GATE"], "w").close()  # ready: start when told
sys.stdin.readline()
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = usage.ru_utime + usage.ru_stime
started = time.perf_counter()
progress = Progress(stream=sys.stderr, tty=False)
results = [r for found in hook(nodes=nodes, access=access, settings=settings, progress=progress) for r in found]
finish(path, started, cpu0, {"ok": sum(r.ok for r in results), "failed": [r.message for r in results if not r.ok][:3],
                             "attempts": sum(r.attempts for r in results)})
"""
)

PSSH_DRIVER = (
    SAMPLER
    + """
from pssh.clients import ParallelSSHClient
from pssh.config import HostConfig
from gevent import joinall
path, mode, hosts, key, user, pool, extra_arg = sys.argv[1:8]
hosts = json.loads(hosts)
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = usage.ru_utime + usage.ru_stime
started = time.perf_counter()
client = ParallelSSHClient([a for a, _ in hosts], user=user, pkey=key, pool_size=int(pool),
                           host_config=[HostConfig(port=p, user=user, private_key=key) for _, p in hosts],
                           timeout=60, num_retries=1)
ok, got = 0, 0
if mode == "push":
    greenlets = client.copy_file(extra_arg, extra_arg.replace("src", "dst"))
    joinall(greenlets, raise_error=False)
    ok = sum(1 for g in greenlets if g.exception is None)
else:
    output = client.run_command(extra_arg, stop_on_errors=False)
    for host_out in output:
        if host_out.stdout is not None:
            for line in host_out.stdout:
                got += len(line) + 1
    client.join(output)
    ok = sum(1 for o in output if o.exit_code == 0)
finish(path, started, cpu0, {"ok": ok, "bytes": got})
"""
)


def ensure_user(home: Path) -> bool:
    """A login user whose shell is /bin/sh; True if this run created it (and must remove it)."""
    if subprocess.run(["id", BENCH_USER], capture_output=True, check=False).returncode == 0:
        return False
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", BENCH_USER], check=True)
    subprocess.run(["usermod", "-p", "*", BENCH_USER], check=True)  # unlocked for key logins, no password
    return True


def proc_cpu(pids: list[int]) -> float:
    """CPU seconds of ``pids`` with their reaped children (the sshd listeners reap theirs)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
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


class Bench:
    """The farm, the key, the ess home and the two drivers of one run."""

    def __init__(self, home: Path, farm: Farm, key: Path, pssh: Path | None, cores: int) -> None:
        self.home, self.farm, self.key, self.pssh, self.cores = home, farm, key, pssh, cores
        self.env = {
            **os.environ,
            "ESS_HOME": str(home / "ess_home"),
            "ESS_KEY_FILE": str(key),
            "ESS_USERNAME": BENCH_USER,
            "ESS_STRICT_HOST_KEYS": "1",
        }
        self.source = home / "push_src.bin"
        self.source.write_bytes(os.urandom(PUSH_BYTES))
        self.dest = Path("/tmp/ess-bench-push-dst")
        self.dest.mkdir(exist_ok=True)
        subprocess.run(["chown", BENCH_USER, str(self.dest)], check=True)

    def ess(self, argv: list[str], *, at: float | None = None) -> dict[str, Any]:
        """One ess CLI run in a fresh child; its self-measurement plus the sshd side's CPU."""
        out = Path(tempfile.mktemp(dir=self.home, suffix=".json"))
        server0 = proc_cpu(self.farm.pids())
        done = subprocess.run(
            [sys.executable, "-c", ESS_DRIVER, str(out), *argv],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        time.sleep(0.3)  # let the listeners reap their per-connection children
        if not out.exists():
            raise RuntimeError(f"ess {' '.join(argv[:4])}: driver failed: {done.stderr[-1500:]}")
        reply: dict[str, Any] = json.loads(out.read_text())
        reply["server_cpu"] = proc_cpu(self.farm.pids()) - server0
        reply["stderr"] = done.stderr[-600:]
        return reply

    def register(self, cluster: str, endpoints: list[tuple[str, int]]) -> None:
        # In a TOML config: one command-line or environment value is capped at 1024 characters.
        config = self.home / f"{cluster}.toml"
        config.write_text("[hosts]\nhosts = [" + ", ".join(f'"{a}:{p}"' for a, p in endpoints) + "]\n")
        argv = ["instance", "hosts", "create", "--cluster", cluster, "--no-verify", "--yes"]
        done = subprocess.run(
            ["ess", "--config", str(config), *argv],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"registering {cluster}: {done.stderr[-800:]}")
        sys.path.insert(0, "")
        os.environ["ESS_HOME"] = self.env["ESS_HOME"]
        from ess_ssh.hostkeys import known_hosts_path

        self.farm.write_known_hosts(known_hosts_path("hosts", cluster))

    def pssh_run(self, mode: str, endpoints: list[tuple[str, int]], parallel: int, arg: str) -> dict[str, Any]:
        assert self.pssh is not None
        out = Path(tempfile.mktemp(dir=self.home, suffix=".json"))
        server0 = proc_cpu(self.farm.pids())
        done = subprocess.run(
            [str(self.pssh), "-c", PSSH_DRIVER, str(out), mode, json.dumps(endpoints), str(self.key), BENCH_USER]
            + [str(parallel), arg],
            capture_output=True,
            text=True,
            check=False,
        )
        time.sleep(0.3)
        if not out.exists():
            raise RuntimeError(f"parallel-ssh {mode}: {done.stderr[-1500:]}")
        reply: dict[str, Any] = json.loads(out.read_text())
        reply["server_cpu"] = proc_cpu(self.farm.pids()) - server0
        return reply


COMMANDS = {
    "verify": ("verify", ["verify"], "true"),
    "true": ("exec -- true", ["exec", "--", "true"], "true"),
    "exec1m": ("exec, 1 MiB out/node", ["exec", "--", EXEC_1M], EXEC_1M),
    "push10m": ("push 10 MB", None, ""),
}


def ess_argv(command: str, cluster: str, parallel: int, bench: Bench) -> list[str]:
    base = ["instance", "hosts"]
    common = ["--cluster", cluster, "--parallel", str(parallel), "--timeout", "600"]
    if command == "push10m":
        return [*base, "push", str(bench.source), "--dest", str(bench.dest), *common]
    words = COMMANDS[command][1]
    assert words is not None
    return [*base, words[0], *common, *words[1:]]


def fanout(
    bench: Bench, sizes: list[int], commands: list[str], parallel_max: int, repeat: int, pssh_heavy_max: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        cluster = f"fan{n}"
        endpoints = bench.farm.endpoints[:n]
        bench.register(cluster, endpoints)
        parallel = min(n, parallel_max)
        bench.ess(["instance", "hosts", "list", "--cluster", cluster])  # warm the page cache
        for command in commands:
            runs = repeat if command == "verify" else 1
            ess_runs, pssh_runs = [], []
            for _ in range(runs):
                got = bench.ess(ess_argv(command, cluster, parallel, bench))
                if got["code"] != 0:
                    raise RuntimeError(f"ess {command} N={n} exited {got['code']}: {got['stderr']}")
                ess_runs.append(got)
                if bench.pssh is not None and (command in ("verify", "true") or n <= pssh_heavy_max):
                    if command == "push10m":
                        src = str(bench.source)
                        link = bench.dest.parent / "ess-bench-push-src.bin"
                        link.unlink(missing_ok=True)
                        link.symlink_to(src)
                        p = bench.pssh_run("push", endpoints, parallel, str(link))
                    else:
                        p = bench.pssh_run("run", endpoints, parallel, COMMANDS[command][2])
                    pssh_runs.append(p)
            row = {"n": n, "command": command, "parallel": parallel, "ess": median_run(ess_runs)}
            if pssh_runs:
                row["pssh"] = median_run(pssh_runs)
            if command == "verify":
                serial = bench.ess(ess_argv("verify", cluster, 1, bench))
                row["serial"] = serial
                row["cpu_floor"] = (serial["cpu"] + serial["server_cpu"]) / bench.cores
            row["load"] = report.load_average()
            rows.append(row)
            e = row["ess"]
            print(
                f"N={n} {command}: ess {e['wall']:.2f}s cpu {e['cpu']:.2f}+{e['server_cpu']:.2f} "
                f"rss {e['rss_mb']:.0f}MB fds {e['fds']}"
                + (f"; pssh {row['pssh']['wall']:.2f}s ok {row['pssh']['ok']}" if "pssh" in row else "")
                + (f"; CPU floor {row['cpu_floor']:.2f}s" if "cpu_floor" in row else ""),
                file=sys.stderr,
            )
    return rows


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time, plus the min and max walls and the peaks over all runs."""
    ordered = sorted(runs, key=lambda r: r["wall"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["min"], chosen["max"] = ordered[0]["wall"], ordered[-1]["wall"]
    chosen["rss_peak"] = max(r["rss_mb"] for r in runs)
    chosen["fds_peak"] = max(r["fds"] for r in runs)
    return chosen


def readiness(home: Path, pub: str, key: Path, n: int, spread: float, repeat: int) -> list[dict[str, float]]:
    """ess_check_nodes on n just-launched nodes whose sshd start at staggered times after it."""
    results = []
    for r in range(repeat):
        farm = Farm(home / f"ready{r}", pub, n, per_sshd=1, start=False)
        ess_home = home / f"ready_home{r}"
        env = {**os.environ, "ESS_HOME": str(ess_home)}
        os.environ["ESS_HOME"] = str(ess_home)
        from ess_ssh.hostkeys import known_hosts_path

        farm.write_known_hosts(known_hosts_path("hosts", "ready"))
        out = home / f"ready{r}.json"
        rng = random.Random(r)
        offsets = sorted(rng.uniform(0.5, spread) for _ in range(n))
        order = list(range(n))
        rng.shuffle(order)  # endpoints come up in an order unrelated to the list ess works through
        up: dict[tuple[str, int], float] = {}
        stop = threading.Event()

        def watch(farm: Farm = farm, up: dict[tuple[str, int], float] = up, stop: threading.Event = stop) -> None:
            wanted = set(farm.endpoints)
            while not stop.is_set() and len(up) < len(wanted):
                found = listening() & wanted
                now = time.time()
                for endpoint in found - up.keys():
                    up[endpoint] = now
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        try:
            watcher.start()
            gate = home / f"ready{r}.gate"
            child = subprocess.Popen(
                [sys.executable, "-c", READY_DRIVER, str(out), json.dumps(farm.endpoints), str(key), BENCH_USER],
                env={**env, "ESS_BENCH_GATE": str(gate)},
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            # The clock starts when the check starts, not when Python does (imports take seconds under load).
            while not gate.exists():
                if child.poll() is not None:
                    raise RuntimeError(f"readiness driver died: {child.stderr.read()[-800:] if child.stderr else ''}")
                time.sleep(0.005)
            began = time.time()
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
            child.stdin = None  # closed: communicate() below must not flush it
            for offset, g in zip(offsets, order, strict=True):
                time.sleep(max(0.0, began + offset - time.time()))
                farm.start_group(g)
            _, err = child.communicate(timeout=180)
            stop.set()
            watcher.join()
            reply = json.loads(out.read_text())
            if reply["ok"] != n:
                raise RuntimeError(f"readiness: {n - reply['ok']} nodes failed: {reply['failed']} {err[-800:]}")
            last = max(up.values())
            results.append(
                {
                    "lag": reply["end"] - last,
                    "last": last - began,
                    "total": reply["end"] - began,
                    "attempts": reply["attempts"],
                    "cpu": reply["cpu"],
                }
            )
            print(f"readiness run {r}: {results[-1]}", file=sys.stderr)
        finally:
            stop.set()
            farm.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--repeat", type=int, default=3, help="runs of verify (the other commands: 1)")
    parser.add_argument(
        "--keep",
        type=Path,
        help="JSON file of earlier rows: rows measured now replace theirs (same N and command), the rest are "
        "kept, so one size can be re-run at a quieter moment",
    )
    parser.add_argument("--parallel", type=int, default=32, help="concurrency for every tool (capped at N)")
    parser.add_argument("--commands", default="verify,true,exec1m,push10m")
    parser.add_argument(
        "--pssh-heavy-max",
        type=int,
        default=100,
        help="largest N for parallel-ssh's exec 1 MiB and push (it reads output line by line: 210 s at N=100)",
    )
    parser.add_argument("--ready-nodes", type=int, default=100)
    parser.add_argument("--ready-spread", type=float, default=10.0, help="seconds over which the endpoints start")
    parser.add_argument("--ready-repeat", type=int, default=3)
    parser.add_argument("--no-readiness", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not (os.access("/usr/sbin/sshd", os.X_OK) and os.geteuid() == 0):
        sys.exit("needs root and /usr/sbin/sshd (apt-get install -y openssh-server)")
    sizes = [int(s) for s in args.sizes.split(",")]
    commands = [c for c in args.commands.split(",") if c]
    unknown = set(commands) - COMMANDS.keys()
    if unknown:
        sys.exit(f"--commands: unknown {sorted(unknown)} (choose from {','.join(COMMANDS)})")
    home = Path(tempfile.mkdtemp(prefix="ess-bench-ssh-"))
    home.chmod(0o755)  # sshd reads authorized_keys as the node user
    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = (home / "id_ed25519.pub").read_text().strip()
    pssh = ensure_pssh()
    cores = os.cpu_count() or 1
    created_user = False
    load_before = report.load_average()
    farm: Farm | None = None
    rows: list[dict[str, Any]] = []
    ready: list[dict[str, float]] = []
    farm_cost = None
    try:
        created_user = ensure_user(home)
        if sizes and commands:
            started = time.perf_counter()
            farm = Farm(home / "farm", pub, max(sizes))
            farm_start = time.perf_counter() - started
            farm_cost = (farm.cost(), farm_start, len(farm.endpoints))
            bench = Bench(home, farm, key, pssh, cores)
            rows = fanout(bench, sizes, commands, args.parallel, args.repeat, args.pssh_heavy_max)
            farm.stop()
            farm = None
        if not args.no_readiness:
            ready = readiness(home, pub, key, args.ready_nodes, args.ready_spread, args.ready_repeat)
    finally:
        if farm is not None:
            farm.stop()
        if created_user:
            subprocess.run(["userdel", BENCH_USER], check=False)
    load_after = report.load_average()
    if args.keep:
        rows, ready, farm_cost = merge_kept(args.keep, rows, ready, farm_cost)
    text = render(rows, ready, farm_cost, cores, args, load_before, load_after, pssh)
    print(text)
    if args.no_write:
        return
    if rows:
        plot(rows, report.DOCS / "bench_ssh_fanout.png")
    report.write_section("ssh", text)


def merge_kept(
    keep: Path, rows: list[dict[str, Any]], ready: list[dict[str, float]], farm_cost: Any
) -> tuple[list[dict[str, Any]], list[dict[str, float]], Any]:
    """Earlier results from ``keep`` with those measured now in their place; written back to ``keep``."""
    earlier = json.loads(keep.read_text()) if keep.exists() else {"rows": [], "ready": [], "farm": None}
    fresh = {(r["n"], r["command"]): r for r in rows}
    for old in earlier["rows"]:  # parallel-ssh's figure stands when only ess was re-run
        new = fresh.get((old["n"], old["command"]))
        if new is not None and "pssh" not in new and "pssh" in old:
            new["pssh"] = old["pssh"]
    merged = [r for r in earlier["rows"] if (r["n"], r["command"]) not in fresh] + rows
    order = list(COMMANDS)
    merged.sort(key=lambda r: (r["n"], order.index(r["command"])))
    ready = ready or earlier["ready"]
    if farm_cost is not None and (earlier["farm"] is None or farm_cost[2] >= earlier["farm"][2]):
        farm = [dataclasses.asdict(farm_cost[0]), farm_cost[1], farm_cost[2]]
    else:
        farm = earlier["farm"]
    keep.write_text(json.dumps({"rows": merged, "ready": ready, "farm": farm}, indent=1))
    return merged, ready, None if farm is None else (FarmCost(**farm[0]), farm[1], farm[2])


def render(
    rows: list[dict[str, Any]],
    ready: list[dict[str, float]],
    farm_cost: Any,
    cores: int,
    args: argparse.Namespace,
    load_before: str,
    load_after: str,
    pssh: Path | None,
) -> str:
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    info = report.machine(
        ["paramiko", "cryptography"],
        f"{ssh_version}; {pssh_version(pssh)}. Load average (1, 5, 15 min) before: {load_before}; "
        f"after: {load_after}; the load counts the benchmark's own sshd children too (load per row below).",
    )
    lines = ["## 2. SSH fan-out: verify, exec and push on N loopback OpenSSH endpoints", "", info, ""]
    if farm_cost is not None:
        cost, start_s, count = farm_cost
        lines += [
            f"**Harness.** {count} endpoints = {cost.processes} sshd listeners x up to 16 `ListenAddress` each "
            f"(OpenSSH's MAX_LISTEN_SOCKS is 16: a 17th makes sshd exit) on 127.77.x.y, one shared host key, "
            f"known_hosts listing every `[addr]:port`. Idle cost: {cost.processes} processes, "
            f"{cost.rss_mb:.0f} MB RSS summed ({cost.pss_mb:.0f} MB PSS: the pages are shared), "
            f"{cost.fds} fds; started in {start_s:.2f} s. Each connection adds one sshd child (re-exec'd, "
            "privilege-separated) while it lasts. No packet filter or extra package is needed.",
            "",
            f"ess runs as the CLI (`ess instance hosts verify|exec|push --cluster fanN --parallel P`, strict "
            f"host keys) in a small child that measures itself; parallel-ssh likewise; every tool at P = "
            f"min(N, {args.parallel}). Wall: the command, not interpreter start. CPU: the client's own; "
            "*CPU floor*: CPU seconds (ess plus every sshd) of `verify --parallel 1` / cores. "
            f"verify: the median of {args.repeat} runs (range in brackets); one run of each other command. "
            "Each row records the load average when it ended: ratios measured in the same minute carry the claims.",
            "",
        ]
        header = ["N", "command", "ess s", "ess CPU s", "ess peak RSS MB", "ess peak fds", "parallel-ssh s"]
        header += ["pssh CPU s", "pssh peak RSS MB", "pssh peak fds", "CPU floor s", "ess / CPU floor", "load"]
        table_rows = []
        for row in rows:
            e, p = row["ess"], row.get("pssh")
            floor = row.get("cpu_floor")
            table_rows.append(
                [
                    str(row["n"]),
                    COMMANDS[row["command"]][0],
                    f"{e['wall']:.2f} ({e['min']:.2f}-{e['max']:.2f})" if e["min"] != e["max"] else f"{e['wall']:.2f}",
                    f"{e['cpu']:.2f}",
                    f"{e['rss_peak']:.0f}",
                    str(e["fds_peak"]),
                    f"{p['wall']:.2f}" if p else "n/a",
                    f"{p['cpu']:.2f}" if p else "n/a",
                    f"{p['rss_peak']:.0f}" if p else "n/a",
                    str(p["fds_peak"]) if p else "n/a",
                    f"{floor:.2f}" if floor else "",
                    f"{e['wall'] / floor:.2f}x" if floor else "",
                    row["load"],
                ]
            )
        lines += [report.table(header, table_rows), "", *verdicts(rows), "", "![SSH fan-out](bench_ssh_fanout.png)"]
    if ready:
        lags = sorted(r["lag"] for r in ready)
        lines += [
            "",
            f"**SSH readiness.** {args.ready_nodes} endpoints, one sshd each, started in random order at uniform "
            f"times over 0.5-{args.ready_spread:g} s after the check starts; the nodes are marked launched just now "
            "(as EC2 reports a fresh instance, so refusals are retried, not final) and checked through the ssh "
            "plugin's `ess_check_nodes` hook (what `create` and `verify` call) at P = 32 with strict host keys. "
            "*Lag*: when the check returned minus when the last endpoint's port entered the kernel's listen table "
            f"(polled every 5 ms). {len(ready)} runs.",
            "",
            report.table(
                ["run", "last endpoint up s", "check done s", "lag s", "connect attempts", "client CPU s"],
                [
                    [
                        str(i + 1),
                        f"{r['last']:.2f}",
                        f"{r['total']:.2f}",
                        f"{r['lag']:.2f}",
                        str(r["attempts"]),
                        f"{r['cpu']:.2f}",
                    ]
                    for i, r in enumerate(ready)
                ],
            ),
            "",
            f"- Median lag {median(lags):.2f} s (goal <= 0.5 s at N={args.ready_nodes}: "
            f"{'MET' if median(lags) <= 0.5 else 'MISSED'}; worst {lags[-1]:.2f} s).",
        ]
    return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    biggest = max(r["n"] for r in rows)
    smallest = min(r["n"] for r in rows)
    for row in rows:
        if row["n"] != biggest:
            continue
        e, p = row["ess"], row.get("pssh")
        name = COMMANDS[row["command"]][0]
        parts = [f"RSS {e['rss_peak']:.0f} MB ({'MET' if e['rss_peak'] < 200 else 'MISSED'} < 200 MB)"]
        small = next(r for r in rows if r["n"] == smallest and r["command"] == row["command"])
        parts.append(
            f"peak fds {e['fds_peak']} at N={biggest} vs {small['ess']['fds_peak']} at N={smallest} "
            f"(P={row['parallel']})"
        )
        if p:
            parts.append(f"{e['wall'] / p['wall']:.2f}x parallel-ssh's time")
        if "cpu_floor" in row:
            ratio = e["wall"] / row["cpu_floor"]
            parts.append(f"{ratio:.2f}x the CPU floor ({'MET' if ratio <= 1.3 else 'MISSED'} <= 1.3x)")
        out.append(f"- N={biggest} {name}: " + "; ".join(parts) + "; every node exit 0.")
    return out


def plot(rows: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    commands = list(dict.fromkeys(r["command"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for command in commands:
        mine = [r for r in rows if r["command"] == command]
        sizes = [r["n"] for r in mine]
        line = axes[0].plot(sizes, [r["ess"]["wall"] for r in mine], "o-", label=f"ess {COMMANDS[command][0]}")
        if all("pssh" in r for r in mine):
            color = line[0].get_color()
            axes[0].plot(sizes, [r["pssh"]["wall"] for r in mine], "^--", color=color, label="  parallel-ssh")
        if command == "verify":
            axes[0].plot(sizes, [r["cpu_floor"] for r in mine], ":", color="black", label="verify CPU floor")
        axes[1].plot(sizes, [r["ess"]["rss_peak"] for r in mine], "o-", label=f"ess {COMMANDS[command][0]}")
    axes[0].set(xlabel="nodes N", ylabel="seconds", title="wall time", xscale="log", yscale="log")
    axes[1].axhline(200, color="red", linestyle=":", label="goal: 200 MB")
    axes[1].set(xlabel="nodes N", ylabel="MB", title="ess peak RSS", xscale="log")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    report.save_plot(fig, png)


if __name__ == "__main__":
    main()
