"""Small TCP helpers for the processes `outreach up` starts: is a port free, is a server listening yet.

The free-port check binds the way our servers do (SO_REUSEADDR), so a port left in TIME_WAIT by a
previous run counts as free and only a program that really listens there counts as in use.
"""

from __future__ import annotations

import errno
import socket
import time

from outreach.errors import OutreachError

# Wildcard addresses cannot be connected to; talk to the loopback of the same family instead.
_WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to `host`."""
    return _WILDCARD_TO_LOOPBACK.get(host, host)


def url_host(host: str) -> str:
    """`host` as it appears in a URL a person can click: loopback for wildcards, IPv6 in brackets."""
    reachable = connect_host(host)
    return f"[{reachable}]" if ":" in reachable else reachable


def _bind_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OutreachError(f"cannot listen on '{host}': {exc.strerror}; use an address such as 127.0.0.1") from exc
    family, _type, _proto, _name, address = infos[0]
    return family, address


def port_error(host: str, port: int, what: str, hint: str | None, exc: OSError) -> OutreachError:
    """The one-line message for a failed bind, saying which part needed the port and what to do."""
    if exc.errno == errno.EADDRINUSE:
        fix = "stop the other program or choose another port" + (f" with {hint}" if hint else "")
        return OutreachError(f"port {port} on {host} is already in use ({what}): {fix}")
    if exc.errno == errno.EACCES:
        fix = "choose a port above 1023" + (f" with {hint}" if hint else "")
        return OutreachError(f"port {port} on {host} needs special permissions ({what}): {fix}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return OutreachError(f"address {host} does not belong to this machine ({what}): use 127.0.0.1 or 0.0.0.0")
    return OutreachError(f"cannot listen on port {port} on {host} ({what}): {exc.strerror or exc}")


def require_free_port(host: str, port: int, what: str, hint: str | None = None) -> None:
    """Raise OutreachError when a server for `what` could not listen on host:port right now."""
    if not 0 < port < 65536:
        raise OutreachError(f"port {port} ({what}) is not a valid port: use 1–65535")
    family, address = _bind_address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise port_error(host, port, what, hint, exc) from None


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((connect_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Wait until host:port accepts connections; False when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        if port_accepts(host, port, timeout=min(0.5, max(timeout, 0.05))):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel's pick); for tests and local tools."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
