"""Helpers for tests that start a service with an HTTP port."""

from __future__ import annotations

import socket
import time

import httpx

from streamml.demo.cluster import ServiceProcess


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(service: ServiceProcess, url: str, path: str = "/readyz", timeout_s: float = 90.0) -> None:
    """Block until `url + path` returns 200; fail with the service's log tail if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert service.alive(), f"{service.service} exited:\n{service.log_tail()}"
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{service.service}: {path} not 200 after {timeout_s:.0f}s:\n{service.log_tail()}"
        time.sleep(0.3)
