"""The secrets scan itself must be able to fail, and the redaction it relies on must hold."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from ess.redact import RedactingFilter, register_secret, scrub
from ess_ec2.testing import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

pytest_plugins = ["pytester"]


def test_the_scan_fails_a_test_that_prints_the_secret(pytester):
    pytester.makeconftest((__import__("pathlib").Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_leak=f"def test_leaks():\n    print({FAKE_SECRET_KEY!r})\n")
    # Not pytester.runpytest_*: it echoes the inner output into this test's capture, which
    # the scan (rightly) would flag here too.
    env = {k: v for k, v in os.environ.items() if k != "ESS_RELIABILITY_LOG"}  # keep its deliberate leak out
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pytester.path)],
        capture_output=True,
        text=True,
        cwd=pytester.path,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1 and "1 failed" in proc.stdout.strip().splitlines()[-1]
    assert "secret material" in proc.stdout


def test_scrub_masks_registered_secrets_keys_and_signatures():
    register_secret(FAKE_SECRET_KEY)
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    text = scrub(f"secret={FAKE_SECRET_KEY} key={key} url=...&Signature=abcdef0123&x=1")
    assert FAKE_SECRET_KEY not in text and "b3BlbnNz" not in text and "abcdef0123" not in text


def test_log_records_are_scrubbed_with_arguments_and_tracebacks(caplog):
    register_secret(FAKE_SECRET_KEY)
    logger = logging.getLogger("ess.test.secrets")
    handler_filter = RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.DEBUG, logger="ess.test.secrets"):
            logger.debug("creds %s", FAKE_SECRET_KEY)
            try:
                raise RuntimeError(f"boom {FAKE_SECRET_KEY}")
            except RuntimeError:
                logger.exception("failed")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert FAKE_SECRET_KEY not in caplog.text
    assert "****" in caplog.text and "RuntimeError: boom ****" in caplog.text


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_internal_errors_and_debug_tracebacks_are_scrubbed(ess, memory, monkeypatch, capsys, debug):
    register_secret(FAKE_SECRET_KEY)

    def explode(self, settings):
        raise RuntimeError(f"backend blew up holding {FAKE_SECRET_KEY}")

    monkeypatch.setattr(memory.MemoryBackend, "nodes", explode)
    from ess.cli import run

    capsys.readouterr()
    code = run(["instance", "memory", "list", *debug])
    err = capsys.readouterr().err
    assert code == 1 and "internal error: RuntimeError: backend blew up holding ****" in err
    assert FAKE_SECRET_KEY not in err
    assert ("Traceback" in err) == bool(debug)


def test_a_failing_log_write_never_dumps_the_exception_it_was_handling(monkeypatch):
    """Found by the scan: logging's default handleError printed the in-flight exception raw."""
    from ess.cli import configure_logging

    register_secret(FAKE_SECRET_KEY)
    configure_logging(debug=True)

    class FlakyStderr:
        def __init__(self) -> None:
            self.written: list[str] = []
            self.calls = 0

        def write(self, text: str) -> int:
            self.calls += 1
            if self.calls == 1:
                raise ValueError("I/O operation on closed file.")
            self.written.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    flaky = FlakyStderr()
    monkeypatch.setattr(sys, "stderr", flaky)
    try:
        raise RuntimeError(f"boom {FAKE_SECRET_KEY}")
    except RuntimeError:
        logging.getLogger("ess.test").exception("request failed")
    monkeypatch.undo()
    written = "".join(flaky.written)
    assert FAKE_SECRET_KEY not in written
    assert written == "ess: could not write a log record from ess.test\n"


# -- config text is read before any secret is known: errors must not quote it ------------
PASTED_ROW = f"{FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("instance.conf", f"[EC2]\nkey_name: pem_file\n{PASTED_ROW}\n"),
        ("instance.conf", f"[EC2]\nkey_name: pem_file\n  {PASTED_ROW}\n"),
        ("instance.toml", f'[EC2]\nkey_name = "pem_file"\n{PASTED_ROW}\n'),
        ("instance.toml", f'[EC2]\n"{FAKE_ACCESS_KEY}" = 1\n"{FAKE_ACCESS_KEY}" = 2\n'),
        ("instance.toml", f'[EC2]\ninstance_count = "{FAKE_SECRET_KEY}"\n'),
        ("instance.conf", f"[EC2]\ninstance_count: {FAKE_ACCESS_KEY}\n"),
        ("instance.toml", f'[EC2]\n{FAKE_ACCESS_KEY} = "{FAKE_SECRET_KEY}"\n'),
    ],
)
def test_a_credential_pasted_into_the_config_is_never_quoted_by_the_error(ess, tmp_path, monkeypatch, name, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    result = ess("instance", "ec2", "create", "--yes", "--no-verify", "--config", name)
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and name in result.err, result
    assert FAKE_ACCESS_KEY not in result.err and FAKE_SECRET_KEY not in result.err, result
    assert "DoNotLeak" not in result.err, result


def test_mask_credentials_masks_key_shapes_and_keeps_ordinary_text():
    from ess.redact import mask_credentials

    real_shape = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert mask_credentials(f"x {FAKE_ACCESS_KEY} y {real_shape} z") == "x **** y **** z"
    ordinary = "line 3: /home/user/projects/clusterconfig/instance.conf m3.medium essentia-access"
    assert mask_credentials(ordinary) == ordinary


# -- --debug shows every AWS call and SSH attempt: none of those lines may carry a secret ----
def test_debug_transcript_of_an_ec2_create_signed_with_csv_credentials_holds_no_secret(
    ess, moto_endpoint, tmp_path, monkeypatch
):
    """The credentials come from the console CSV (registered with ess.redact) and sign every
    request; the transcript has the new debug lines (AWS calls, polls, hooks) and no secret."""
    from support.fault_world import lean_world

    monkeypatch.setenv("ESS_DISABLE_PLUGINS", "ssh")
    world = lean_world(moto_endpoint, tmp_path, monkeypatch)
    (world.folder / "credential_file.csv").write_text(
        f"User Name,Access Key Id,Secret Access Key\nessentia,{FAKE_ACCESS_KEY},{FAKE_SECRET_KEY}\n"
    )
    world.conf.write_text("[EC2]\naws_credential: credential_file\n" + world.conf.read_text().split("\n", 1)[1])
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.chdir(world.folder)

    created = ess("--debug", "instance", "ec2", "create", "--yes", "--no-verify", "--number", "2")
    assert created.code == 0, created  # with no credentials in the environment: the CSV signed
    # The scan would be vacuous without the lines it is meant to cover.
    assert "DEBUG ess_ec2.calllog: ec2 RunInstances (2 instances): HTTP 200" in created.err, created.err
    assert "DEBUG ess_ec2.polling: poll " in created.err and "DEBUG ess.plugins: hook " in created.err
    assert "DEBUG ess_ec2.backend: wait times us-east-1 " in created.err  # the file's key and count
    for secret in (FAKE_SECRET_KEY, "PRIVATE KEY-----", "Signature="):
        assert secret not in created.err and secret not in created.out, secret
