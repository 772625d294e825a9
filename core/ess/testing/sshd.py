"""An in-process SSH node for tests: a real SSH server on 127.0.0.1, no OpenSSH needed.

Plugin authors use it to test anything that talks SSH to nodes (checkers, bootstrap
hooks, ``exec``) offline and in milliseconds::

    from ess.testing.sshd import SshNode, generate_ed25519_key, write_private_key

    key = generate_ed25519_key()
    key_file = write_private_key(key, tmp_path / "id_ed25519")
    with SshNode(authorized_keys=[key], username="ec2-user") as server:
        node = server.node("i-1")          # an ess.models.Node pointing at the server
        ...

Each connection is a real paramiko ``Transport`` (key exchange, host key, public-key
auth). Commands run through ``/bin/sh -c`` by default, or a ``handler`` you pass. The
server records every command and, through an optional shared :class:`Gauge`, how many
commands ran at the same time, so a test can prove parallelism without measuring time.

Misbehaving nodes: ``mode="silent"`` accepts TCP and never sends a banner (a hung sshd);
:meth:`SshNode.start_later` opens the port only after a delay (a node still booting).

paramiko note: the exec request callback only records the command; it runs on the
connection's own thread after ``accept`` — replying inside the callback makes concurrent
clients fail intermittently.
"""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paramiko

from ess.models import RUNNING, Node

#: A command handler: command text in, (exit code, stdout, stderr) out.
Handler = Callable[[str], tuple[int, bytes, bytes]]


def generate_ed25519_key() -> paramiko.Ed25519Key:
    """A fresh ed25519 private key (fast: use it for host keys and most user keys)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        .decode()
    )
    key = paramiko.Ed25519Key(file_obj=io.StringIO(text))
    # paramiko cannot serialize ed25519 keys; keep the text so write_private_key can.
    key._ess_openssh_text = text
    return key


def generate_rsa_key(bits: int = 2048) -> paramiko.RSAKey:
    """A fresh RSA private key, like the ones EC2 hands out as .pem files."""
    return paramiko.RSAKey.generate(bits)


def write_private_key(key: paramiko.PKey, path: Path, mode: int = 0o600) -> Path:
    """Write ``key`` to ``path`` (RSA as a traditional PEM, like EC2; ed25519 in OpenSSH format)."""
    path = Path(path)
    if isinstance(key, paramiko.Ed25519Key):
        text = getattr(key, "_ess_openssh_text", None)
        if text is None:
            raise ValueError("write_private_key writes ed25519 keys made by generate_ed25519_key()")
        path.write_text(text)
    else:
        key.write_private_key_file(str(path))
    path.chmod(mode)
    return path


def public_key_line(key: paramiko.PKey) -> str:
    """The OpenSSH public key line of ``key`` ("ssh-ed25519 AAAA..."), as a backend reports it."""
    return f"{key.get_name()} {key.get_base64()}"


class Gauge:
    """Counts commands running right now across servers, and the most at any one moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.total = 0

    def __enter__(self) -> Gauge:
        with self._lock:
            self.current += 1
            self.total += 1
            self.peak = max(self.peak, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


def shell_handler(command: str) -> tuple[int, bytes, bytes]:
    """Run the command with /bin/sh on this machine (the default handler)."""
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for closed-port tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SshNode:
    """A real SSH server on 127.0.0.1 that behaves like one worker node."""

    def __init__(
        self,
        *,
        authorized_keys: Iterable[paramiko.PKey] = (),
        username: str = "ess",
        host_key: paramiko.PKey | None = None,
        handler: Handler | None = None,
        mode: str = "ssh",
        port: int = 0,
        gauge: Gauge | None = None,
    ) -> None:
        if mode not in ("ssh", "silent"):
            raise ValueError("mode is 'ssh' or 'silent'")
        self.authorized = {(key.get_name(), key.get_base64()) for key in authorized_keys}
        self.username = username
        self.host_key = host_key or generate_ed25519_key()
        self.handler = handler or shell_handler
        self.mode = mode
        self.port = port
        self.gauge = gauge
        self.address = "127.0.0.1"
        self.commands: list[str] = []
        self.connections = 0
        self.auth_failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[Any] = set()
        self._threads: list[threading.Thread] = []
        self._timer: threading.Timer | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> SshNode:
        """Listen now (on ``port``, or a free one) and serve connections on background threads."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.address, self.port))
        listener.listen(256)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, name=f"sshnode-{self.port}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def start_later(self, seconds: float) -> SshNode:
        """Pick a port now but open it only after ``seconds``: until then connects are refused."""
        if not self.port:
            self.port = free_port()
        self._timer = threading.Timer(seconds, self.start)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            open_now = list(self._open)
        for item in open_now:
            with contextlib.suppress(Exception):
                item.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> SshNode:
        return self if (self._listener or self._timer) else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a test needs ----------------------------------------------------------------
    def node(self, node_id: str = "node-1", *, host_keys: tuple[str, ...] = ()) -> Node:
        """An ``ess.models.Node`` (state running) that points at this server."""
        return Node(
            id=node_id,
            state=RUNNING,
            address=self.address,
            port=self.port,
            private_ip=self.address,
            host_keys=host_keys,
        )

    @property
    def host_key_line(self) -> str:
        """This server's public host key as an OpenSSH line, as a backend would report it."""
        return public_key_line(self.host_key)

    # -- serving --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.add(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        transport = None
        try:
            if self.mode == "silent":
                self._stop.wait()
                return
            transport = paramiko.Transport(sock)
            with self._lock:
                self._open.add(transport)
            transport.add_server_key(self.host_key)
            interface = _Interface(self)
            transport.start_server(server=interface)
            channel = transport.accept(timeout=30)
            if channel is None:
                return
            if not interface.exec_requested.wait(30):
                channel.close()
                return
            command = interface.command
            with self._lock:
                self.commands.append(command)
            if self.gauge is not None:
                with self.gauge:
                    code, out, err = self.handler(command)
            else:
                code, out, err = self.handler(command)
            channel.sendall(out)
            channel.sendall_stderr(err)
            channel.send_exit_status(code)
            channel.shutdown_write()
            channel.close()
            # Let the client close first, so it reads everything before the transport goes.
            deadline = 50
            while transport.is_active() and deadline and not self._stop.is_set():
                self._stop.wait(0.1)
                deadline -= 1
        except Exception:
            pass  # a client that hangs up mid-handshake is normal in these tests
        finally:
            if transport is not None:
                transport.close()
            sock.close()
            with self._lock:
                self._open.discard(sock)
                self._open.discard(transport)


class _Interface(paramiko.ServerInterface):
    def __init__(self, server: SshNode) -> None:
        self.server = server
        self.command = ""
        self.exec_requested = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == self.server.username and (key.get_name(), key.get_base64()) in self.server.authorized:
            return paramiko.AUTH_SUCCESSFUL
        with self.server._lock:
            self.server.auth_failures += 1
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        # Record only; the connection thread runs it (see the module docstring).
        self.command = command.decode("utf-8", "replace")
        self.exec_requested.set()
        return True
