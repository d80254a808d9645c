"""Port checks `outreach up` and the single-process commands run before they start a server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from outreach.errors import OutreachError
from outreach.netutil import connect_host, free_port, require_free_port, url_host, wait_for_port


@pytest.fixture
def listening() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use_is_one_line_naming_port_part_and_flag(listening: int) -> None:
    with pytest.raises(OutreachError) as caught:
        require_free_port("127.0.0.1", listening, "dashboard", "--dashboard-port")
    message = str(caught.value)
    assert message == (
        f"port {listening} on 127.0.0.1 is already in use (dashboard): "
        "stop the other program or choose another port with --dashboard-port"
    )
    assert "\n" not in message


def test_hint_is_optional(listening: int) -> None:
    with pytest.raises(OutreachError, match=r"in use \(capture SMTP\): stop the other program or choose another port$"):
        require_free_port("127.0.0.1", listening, "capture SMTP")


def test_free_port_passes_and_stays_free() -> None:
    port = free_port()
    require_free_port("127.0.0.1", port, "tracking/API service", "--api-port")
    require_free_port("127.0.0.1", port, "tracking/API service", "--api-port")  # the check itself holds nothing


def test_invalid_port_and_unknown_host_are_user_errors() -> None:
    with pytest.raises(OutreachError, match="not a valid port"):
        require_free_port("127.0.0.1", 70000, "dashboard")
    with pytest.raises(OutreachError, match="does not belong to this machine"):
        require_free_port("192.0.2.1", free_port(), "dashboard")  # TEST-NET-1: never a local address


def test_wait_for_port_sees_a_listener_and_times_out_without_one(listening: int) -> None:
    assert wait_for_port("127.0.0.1", listening, timeout=2)
    started = time.monotonic()
    assert not wait_for_port("127.0.0.1", free_port(), timeout=0.3)
    assert time.monotonic() - started < 2


def test_wildcard_addresses_are_reached_through_loopback() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1"
    assert url_host("::") == "[::1]"
    assert url_host("127.0.0.1") == "127.0.0.1"
