"""A real ``ecr-ptc-webhook serve`` process on loopback, and an HTTPS client that trusts its CA."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from webhook.certs import write_certificates

EXECUTABLE = Path(sys.executable).parent / "ecr-ptc-webhook"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WebhookProcess:
    """A running server; use as a context manager."""

    directory: Path
    config: Path
    extra_args: tuple[str, ...] = ()
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def cert_dir(self) -> Path:
        return self.directory / "certs"

    def __enter__(self) -> Self:
        self.port = free_port()
        write_certificates(self.cert_dir, ["localhost"], ["127.0.0.1"])
        self.log = (self.directory / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(EXECUTABLE),
                "serve",
                "--config",
                str(self.config),
                "--tls-cert",
                str(self.cert_dir / "tls.crt"),
                "--tls-key",
                str(self.cert_dir / "tls.key"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--cert-watch-interval",
                "0.2",
                *self.extra_args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()

    def logs(self) -> str:
        return (self.directory / "server.log").read_text()

    def context(self, ca: Path | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(ca or self.cert_dir / "ca.crt"))

    def wait_ready(self, deadline: float = 20.0) -> None:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.logs()}")
            try:
                status, _ = self.request("GET", "/readyz")
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {deadline}s:\n{self.logs()}")

    def connection(self, ca: Path | None = None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(ca), timeout=10)

    def request(
        self, method: str, path: str, body: Any = None, connection: http.client.HTTPSConnection | None = None
    ) -> tuple[int, Any]:
        own = connection is None
        conn = connection or self.connection()
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            content = json.loads(data) if response.getheader("content-type") == "application/json" else data
            return response.status, content
        finally:
            if own:
                conn.close()
