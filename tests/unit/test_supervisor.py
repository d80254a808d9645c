"""`outreach up` decisions that need no processes: is the capture SMTP needed, are the ports usable."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from outreach.errors import OutreachError
from outreach.netutil import free_port
from outreach.supervisor import UpOptions, capture_needed, check_ports, child_specs, is_capture_endpoint

CAPTURE_PORT = 1025


def test_capture_needed_when_no_mailbox_exists() -> None:
    assert capture_needed([], CAPTURE_PORT)


def test_capture_not_needed_once_a_real_mailbox_exists() -> None:
    assert not capture_needed([("smtp.example.com", 587)], CAPTURE_PORT)
    assert not capture_needed([("smtp.example.com", 587), ("mail.example.org", 465)], CAPTURE_PORT)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "::1", "[::1]", "127.0.0.2"])
def test_mailbox_on_loopback_capture_port_counts_as_capture(host: str) -> None:
    assert is_capture_endpoint(host, CAPTURE_PORT, CAPTURE_PORT)
    assert capture_needed([(host, CAPTURE_PORT)], CAPTURE_PORT)


def test_loopback_on_another_port_is_a_real_relay() -> None:
    # A local Postfix on 25 delivers to real people; only the capture port is the capture.
    assert not is_capture_endpoint("127.0.0.1", 25, CAPTURE_PORT)
    assert not capture_needed([("127.0.0.1", 25)], CAPTURE_PORT)


def test_remote_host_on_the_capture_port_is_real() -> None:
    assert not is_capture_endpoint("smtp.example.com", CAPTURE_PORT, CAPTURE_PORT)


def test_up_host_counts_as_this_machine() -> None:
    assert is_capture_endpoint("192.168.1.20", 2525, 2525, up_host="192.168.1.20")
    assert not is_capture_endpoint("192.168.1.21", 2525, 2525, up_host="192.168.1.20")


def test_capture_stays_needed_while_any_mailbox_sends_into_it() -> None:
    assert capture_needed([("smtp.example.com", 587), ("127.0.0.1", CAPTURE_PORT)], CAPTURE_PORT)


def test_exactly_one_worker_and_capture_only_when_needed() -> None:
    options = UpOptions("127.0.0.1", 8501, 8000, 1025)
    with_capture = [spec.name for spec in child_specs(options, with_capture=True)]
    without = [spec.name for spec in child_specs(options, with_capture=False)]
    assert sorted(with_capture) == ["api", "capture", "dashboard", "worker"]
    assert sorted(without) == ["api", "dashboard", "worker"]


def test_same_port_for_two_parts_is_refused() -> None:
    port = free_port()
    with pytest.raises(OutreachError, match=f"--dashboard-port and --api-port are both {port}"):
        check_ports(UpOptions("127.0.0.1", port, port, free_port()), with_capture=False)


def test_smtp_port_is_checked_only_when_capture_runs() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        smtp_port = taken.getsockname()[1]
        options = UpOptions("127.0.0.1", free_port(), free_port(), smtp_port)
        check_ports(options, with_capture=False)
        with pytest.raises(OutreachError, match=f"port {smtp_port} .* \\(capture SMTP\\).* --smtp-port"):
            check_ports(options, with_capture=True)


def test_supervisor_imports_nothing_from_streamlit() -> None:
    code = "import sys, outreach.supervisor; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
