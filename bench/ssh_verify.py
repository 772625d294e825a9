"""Benchmark: verify 50 loopback nodes in parallel vs a serial loop over the same nodes.

Uses real OpenSSH sshd processes when /usr/sbin/sshd exists (run tests/integration/setup.sh
first, as root), else the in-process SSH node from ess.testing.sshd. Prints a Markdown row.

    python bench/ssh_verify.py [--nodes 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import getpass
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="ess-bench-")
    os.environ["ESS_HOME"] = home
    from support.ssh_helpers import make_access, make_settings

    from ess.progress import Progress
    from ess.testing.sshd import SshNode, free_port, generate_ed25519_key, write_private_key
    from ess_ssh.check import check_nodes

    real = os.access("/usr/sbin/sshd", os.X_OK) and os.geteuid() == 0
    servers: list = []
    if real:
        from test_openssh import Sshd

        key = Path(home) / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        pub = (Path(home) / "id_ed25519.pub").read_text().strip()
        os.makedirs("/run/sshd", exist_ok=True)
        servers = [Sshd(Path(home) / f"s{i}", "127.0.0.1", free_port(), pub) for i in range(args.nodes)]
        user = getpass.getuser()
        kind = "OpenSSH 9 sshd processes"
    else:
        pkey = generate_ed25519_key()
        key = write_private_key(pkey, Path(home) / "id_ed25519")
        servers = [SshNode(authorized_keys=[pkey]).start() for _ in range(args.nodes)]
        user = "ess"
        kind = "in-process paramiko servers"
    nodes = [s.node(f"n{i}") for i, s in enumerate(servers)]
    access = make_access(key, username=user)
    try:
        figures = {}
        for label, parallel in (("serial (ssh_parallel=1)", 1), (f"parallel (ssh_parallel={args.nodes})", args.nodes)):
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                results = check_nodes(
                    nodes, access, make_settings(ssh_parallel=parallel), Progress(stream=io.StringIO(), tty=False)
                )
                times.append(time.perf_counter() - start)
                assert all(r.ok for r in results), [r.message for r in results if not r.ok]
            figures[label] = statistics.median(times)
        print(f"{args.nodes} nodes, {kind}, {os.cpu_count()} cores, median of {args.repeat}:")
        for label, seconds in figures.items():
            print(f"| {label} | {seconds:.2f} s | {args.nodes / seconds:.0f} nodes/s |")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
