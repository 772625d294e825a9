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
