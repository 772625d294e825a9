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
