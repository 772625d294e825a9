"""Keep secrets out of every output: stdout, stderr, logs (``--debug`` included), errors.

A plugin that reads a secret (the AWS secret key from a credential CSV, a private key)
calls :func:`register_secret` with it; from then on :func:`scrub` replaces it wherever it
would be printed, and the log filter installed by the CLI does the same for log records.
"""

from __future__ import annotations

import contextlib
import logging
import re

MASK = "****"
_secrets: set[str] = set()
# Private key blocks are never legitimate output, whoever registered them (KeyBlocks).
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_KEY_BLOCK = re.compile(_KEY_BEGIN.pattern + ".*?" + _KEY_END.pattern, re.S)
#: Lines of a key's body: base64 (64 or 70 characters a line but the last), and the headers
#: of an encrypted PEM key, followed by a blank line.
_KEY_BASE64 = re.compile(r"[A-Za-z0-9+/=]+")
_KEY_HEADER = re.compile(r"(?:Proc-Type|DEK-Info|Comment):.*")
_FULL_LINE = 40
KEY_MASK = "-----PRIVATE KEY " + MASK + "-----"
# botocore can echo signed headers and query strings at DEBUG level.
_SIGNATURE = re.compile(r"(Signature=|X-Amz-Security-Token[=:]\s*|aws_secret_access_key[=:]\s*)[^\s,&'\"]+", re.I)


# What AWS credentials look like, for text read before any secret is known (a credential
# CSV row pasted into instance.conf): an access key id, and a long mixed run of the
# base64 alphabet (a secret access key is 40 such characters).
_ACCESS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{12,124}(?![A-Za-z0-9])")
_SECRET_SHAPED = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{30,}(?![A-Za-z0-9/+])")


def mask_credentials(text: str) -> str:
    """``text`` with anything shaped like an AWS access key id or secret key masked.

    For messages about config text (parse and type errors), which are written before the
    credential file is read and so before :func:`register_secret` knows the secret. A run
    counts as secret-shaped when it mixes upper case, lower case and digits.
    """
    text = _ACCESS_KEY_ID.sub(MASK, text)
    return _SECRET_SHAPED.sub(lambda m: MASK if _mixed(m.group(0)) else m.group(0), text)


#: Runs of the characters an AWS access key id or secret key is made of.
_KEY_ALPHABET_RUN = re.compile(r"[A-Za-z0-9/+]+")


def register_credential_shaped(value: object) -> None:
    """Register every credential-shaped run in a config value (text, or a list of texts).

    Users paste the secret key itself where a setting names a file (``aws_credential``), or
    a credential CSV row ends up under a list key. Every error, log line, traceback and
    output that would quote such a value goes through :func:`scrub`, whatever module words
    it: registering the value where every value enters (``ess.settings.resolve``) masks it
    in all of them, plugins' messages included. The shape is :func:`mask_credentials`'s.

    Whole runs only, never pieces of one: scrub replaces registered strings in no set
    order, and a piece masked first would leave the rest of the run in clear. A message
    that shows a piece of a value (a path's last part) words it itself.
    """
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str):
            for run in _KEY_ALPHABET_RUN.findall(item):
                if mask_credentials(run) != run:
                    register_secret(run)


def _mixed(run: str) -> bool:
    return any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)


def register_secret(value: str | None) -> None:
    """Remember ``value`` as secret (short values are ignored: masking them would garble text)."""
    if value and len(value) >= 8:
        _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret and any private-key block masked."""
    if not text:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "PRIVATE KEY-----" in text:
        # Whole blocks first, whatever their lines look like; then BEGIN lines with no END.
        text = _KEY_BLOCK.sub(KEY_MASK, text)
        if "PRIVATE KEY-----" in text:
            text = "".join(KeyBlocks().lines(text.splitlines(keepends=True)))
    # The case-insensitive regex costs ~0.3 s per MiB and exec streams gigabytes through
    # here (every line of `exec` on hosts `addr:port` has a ":" in its prefix): run it only
    # when one of its words is there, found by a plain search (~1 ms per MiB).
    if ("=" in text or ":" in text) and _signature_words(text):
        text = _SIGNATURE.sub(lambda m: m.group(1) + MASK, text)
    return text


class KeyBlocks:
    """Masks private-key blocks in lines of text, across calls (a stream's state).

    A block is its BEGIN line (kept up to the marker, which is masked) and the lines of key
    body after it, up to its END line. A line that cannot be key body there ends a block
    that has no END: ``grep -r "PRIVATE KEY" /etc`` prints BEGIN lines only, and everything
    after the first was once masked away with its newlines (a regex ran to the end of the
    text). Key body is full base64 lines, then at most one shorter one; a short word right
    after a BEGIN line is output. Kept across calls, a key that arrives in two pieces is
    masked in both.
    """

    def __init__(self) -> None:
        self.inside = False
        #: Within a block: "begin", "header" (after Proc-Type/DEK-Info), "full" or "last".
        self.seen = ""

    def lines(self, lines: list[str]) -> list[str]:
        return [out for line in lines if (out := self._line(line)) is not None]

    def _line(self, line: str) -> str | None:
        if self.inside:
            end = _KEY_END.search(line)
            if end is not None:
                self.inside = False
                rest = line[end.end() :]
                return rest if rest.strip() else None
            if self._body(line.strip()):
                return None
            self.inside = False
        return self._outside(line)

    def _body(self, text: str) -> bool:
        """Whether ``text`` (one line, stripped) continues the key; notes what it was."""
        seen = self.seen
        if seen in ("begin", "header") and _KEY_HEADER.fullmatch(text):
            self.seen = "header"
            return True
        if seen == "header" and not text:
            return True
        if _KEY_BASE64.fullmatch(text):
            if len(text) >= _FULL_LINE and seen in ("begin", "header", "full"):
                self.seen = "full"
                return True
            if seen == "full":  # the last, shorter line (a first line is never short)
                self.seen = "last"
                return True
        return False

    def _outside(self, line: str) -> str:
        begin = _KEY_BEGIN.search(line)
        if begin is None:
            return line
        rest = line[begin.end() :]
        end = _KEY_END.search(rest)
        if end is not None:
            return line[: begin.start()] + KEY_MASK + self._outside(rest[end.end() :])
        self.inside, self.seen = True, "begin"
        return line[: begin.start()] + KEY_MASK + line[len(line.rstrip("\r\n")) :]


def _signature_words(text: str) -> bool:
    lowered = text.lower()
    return "signature=" in lowered or "x-amz-security-token" in lowered or "aws_secret_access_key" in lowered


class RedactingFilter(logging.Filter):
    """Scrubs each record's final message (arguments included) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


class RedactingStderrHandler(logging.StreamHandler):
    """Log to whatever ``sys.stderr`` is now, scrubbed, and never dump a raw traceback.

    logging's default ``handleError`` prints the exception being handled, which can carry a
    secret in its message; this one prints one scrubbed line instead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RedactingFilter())

    @property
    def stream(self):  # noqa: ANN201 - the property logging.StreamHandler reads
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        import sys

        with contextlib.suppress(Exception):  # stderr itself is gone: nothing safe to say
            sys.stderr.write(scrub(f"ess: could not write a log record from {record.name}\n"))
