"""Refuse socket connections to anything but loopback and the test namespaces."""

from __future__ import annotations

import errno
import ipaddress
import socket

ALLOWED = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "10.213.0.0/16")]
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
BLOCKED: list[str] = []


def allowed(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # unix sockets, netlink
    host = address[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return any(ip in network for network in ALLOWED)


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address):
        BLOCKED.append(str(address))
        raise OSError(errno.ENETUNREACH, f"test network guard: {address} is not loopback")
    return _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address):
        BLOCKED.append(str(address))
        return errno.ENETUNREACH
    return _original_connect_ex(self, address)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
