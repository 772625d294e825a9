"""The console script ends its process at once (ess.cli.exit_now), losing nothing a normal exit delivers.

A normal interpreter exit frees the whole heap object by object: about 0.3 s after an EC2
command (botocore's service models), between ess's last answer and the shell prompt. These
run the real entry point, ``ess.cli.main``, in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import atexit, sys
    from pathlib import Path
    from ess.cli import main

    marker = Path(sys.argv[1])

    class TornDown:
        def __del__(self):  # runs only if the interpreter tears its modules down
            marker.with_suffix(".teardown").write_text("freed")

    kept = TornDown()

    def handler():  # a plugin's atexit handler, printing a lot after the command
        marker.write_text("ran")
        sys.stdout.write("y" * 200_000 + "\\n")

    atexit.register(handler)
    main(sys.argv[2:])
    """
)


def child(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "marker"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_output_exit_code_and_atexit_handlers_survive_the_fast_exit(tmp_path):
    done = child(tmp_path, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    tail = "y" * 200_000 + "\n"  # written by the atexit handler, flushed after it
    assert done.stdout.endswith(tail)
    assert json.loads(done.stdout[: -len(tail)])  # the command's whole output, before it
    assert (tmp_path / "marker").read_text() == "ran"


def test_the_interpreter_is_not_torn_down(tmp_path):
    done = child(tmp_path, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "marker.teardown").exists()


def test_an_error_keeps_its_exit_code_and_its_line(tmp_path):
    done = child(tmp_path, "instance", "local", "list", "--no-such-flag")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("ess: ")
    assert "--no-such-flag" in done.stderr


# -- streams that are closed, full or never read (red team, 2026-12-01) ------------------------
def _ess(argv: list[str], home: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "ESS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "ess", *argv], capture_output=kwargs.pop("capture", True), text=True, env=env, **kwargs
    )


def test_closed_stdout_or_stdin_and_a_full_disk_are_one_line_never_a_traceback(tmp_path):
    import os

    home = tmp_path / "home"
    assert _ess(["instance", "local", "create", "--number", "1", "--no-verify"], home).returncode == 0
    try:
        closed_stdout = _ess(["--help"], home, capture=False, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
        assert closed_stdout.returncode == 0 and "Traceback" not in closed_stdout.stderr, closed_stdout.stderr
        closed_in = _ess(["instance", "local", "terminate", "all"], home, preexec_fn=lambda: os.close(0))
        assert closed_in.returncode == 2, closed_in
        assert closed_in.stderr.strip().splitlines()[-1].startswith("ess: --yes: required to confirm"), closed_in
        with open("/dev/full", "w") as full:
            listed = _ess(["instance", "local", "list"], home, capture=False, stdout=full, stderr=subprocess.PIPE)
        assert listed.returncode == 1, listed
        assert listed.stderr.strip() == "ess: cannot write the output: No space left on device", listed.stderr
    finally:
        _ess(["instance", "local", "terminate", "all", "--yes"], home)


def test_ctrl_c_ends_exec_even_while_nobody_reads_its_output(tmp_path):
    """A worker blocked writing to a stalled pipe held ess in pool.shutdown(wait=True), and
    exit flushed that stdout; after SIGINT ess lived until the reader went away."""
    import os
    import signal
    import time

    home = tmp_path / "home"
    assert _ess(["instance", "local", "create", "--number", "2", "--no-verify"], home).returncode == 0
    read_end, write_end = os.pipe()  # never read
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ess", "instance", "local", "exec", "--timeout", "120", "--", "yes"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ESS_HOME": str(home)},
        )
        os.close(write_end)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if _pipe_full(read_end):  # the writers are blocked now
                break
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("ess was still running 30 s after Ctrl-C") from None
        assert code == 130, proc.stderr.read() if proc.stderr else ""
    finally:
        os.close(read_end)
        _ess(["instance", "local", "terminate", "all", "--yes"], home)


def _pipe_full(read_end: int) -> bool:
    import fcntl
    import termios

    queued = bytearray(4)
    fcntl.ioctl(read_end, termios.FIONREAD, queued)
    return int.from_bytes(queued, sys.byteorder) >= 60_000
