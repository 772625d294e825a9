"""scrub() on exec output: the signature regex runs only when one of its words is present.

Every line `exec` prints on a hosts cluster starts ``addr:port | ``, so the old guard
(any "=" or ":") ran the case-insensitive regex over all output: 0.13 s of CPU per MiB,
66 of the 76 CPU seconds of `exec` on 500 nodes printing 1 MiB each (issue 17).
Counted, not timed.
"""

from __future__ import annotations

from ess import redact
from ess.redact import scrub


class CountingPattern:
    def __init__(self, pattern):
        self.pattern = pattern
        self.calls = 0

    def sub(self, *args, **kwargs):
        self.calls += 1
        return self.pattern.sub(*args, **kwargs)


def test_plain_output_with_colons_skips_the_signature_regex(monkeypatch):
    counting = CountingPattern(redact._SIGNATURE)
    monkeypatch.setattr(redact, "_SIGNATURE", counting)
    text = "".join(f"[127.77.0.{i}]:30001 | time: {i} s, status=ok\n" for i in range(1000))
    assert scrub(text) == text
    assert counting.calls == 0


def test_signatures_are_still_masked_in_any_case(monkeypatch):
    counting = CountingPattern(redact._SIGNATURE)
    monkeypatch.setattr(redact, "_SIGNATURE", counting)
    assert scrub("node1:22 | GET /?X-Amz-Signature=abc123&x=1") == "node1:22 | GET /?X-Amz-Signature=****&x=1"
    assert scrub("AWS_SECRET_ACCESS_KEY: abcdef y") == "AWS_SECRET_ACCESS_KEY: **** y"
    assert scrub("X-AMZ-SECURITY-TOKEN=tok z") == "X-AMZ-SECURITY-TOKEN=**** z"
    assert counting.calls == 3


# -- private keys in node output (found by the red team, 2026-12-01) -------------------------
import io  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from ess.prefixed import LINE_LIMIT, PrefixedLines  # noqa: E402


def _printer() -> tuple[PrefixedLines, io.StringIO]:
    out = io.StringIO()
    return PrefixedLines(["n1", "n2", "n3"], out, io.StringIO()), out


def test_grep_output_naming_keys_loses_no_line_and_no_newline():
    """``grep -r 'PRIVATE KEY' /etc`` prints BEGIN lines only: the old mask ran from the first
    one to the end of the batch, newline included, gluing three nodes' lines into one."""
    printer, out = _printer()
    listing = b"/etc/a.pem:-----BEGIN PRIVATE KEY-----\n/etc/b.pem:-----BEGIN RSA PRIVATE KEY-----\nline3\nline4 ok\n"
    for node in ("n1", "n2", "n3"):
        printer(node, "stdout", listing)
    expected = [
        "{0} | /etc/a.pem:-----PRIVATE KEY ****-----",
        "{0} | /etc/b.pem:-----PRIVATE KEY ****-----",
        "{0} | line3",
        "{0} | line4 ok",
    ]
    assert out.getvalue().splitlines() == [line.format(n) for n in ("n1", "n2", "n3") for line in expected]


@pytest.mark.parametrize("kind", ["ed25519", "rsa-pem", "rsa-pem-encrypted"])
def test_a_key_arriving_in_two_pieces_is_masked_in_both(tmp_path: Path, kind: str):
    """The old mask covered the first piece and printed the rest of the key in clear."""
    args = {"ed25519": ["-t", "ed25519"], "rsa-pem": ["-t", "rsa", "-m", "PEM"]}.get(
        kind, ["-t", "rsa", "-m", "PEM", "-N", "a passphrase"]
    )
    if "-N" not in args:
        args += ["-N", ""]
    subprocess.run(["ssh-keygen", "-q", "-b", "2048", *args, "-f", str(tmp_path / "k")], check=True)
    key = (tmp_path / "k").read_text()
    lines = key.splitlines(keepends=True)
    body = [line.strip() for line in lines[1:-1] if len(line.strip()) > 8]
    for cut in range(len(lines) + 1):
        printer, out = _printer()
        printer("n2", "stdout", b"before\n" + "".join(lines[:cut]).encode())
        printer("n1", "stdout", b"other node\n")
        printer("n2", "stdout", "".join(lines[cut:]).encode() + b"after\n")
        shown = out.getvalue()
        assert not [piece for piece in body if piece in shown], (cut, shown)
        masked = ["n2 | -----PRIVATE KEY ****-----"]
        expected = ["n2 | before", *masked[cut == 0 :], "n1 | other node", *masked[: cut == 0], "n2 | after"]
        assert shown.splitlines() == expected


def test_a_long_line_is_cut_between_utf8_characters():
    printer, out = _printer()
    text = "€" * 10_000  # 3 bytes each: LINE_LIMIT is not a multiple of 3
    printer("n1", "stdout", (text + "\n").encode())
    shown = out.getvalue()
    assert "\ufffd" not in shown and shown.count("€") == 10_000
    assert all(len(line.encode()) <= LINE_LIMIT + len("n1 | ") for line in shown.splitlines())


def test_exactly_one_piece_held_is_written_whole():
    """The first UTF-8 cut looked one byte past a buffer of exactly LINE_LIMIT bytes."""
    printer, out = _printer()
    printer("n1", "stdout", b"a" * LINE_LIMIT)
    printer("n1", "stdout", "é".encode() * 3 + b"\n")
    assert out.getvalue().splitlines() == ["n1 | " + "a" * LINE_LIMIT, "n1 | ééé"]
