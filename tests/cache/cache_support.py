"""Real registries for the verify tests: Debian's ``docker-registry`` (CNCF distribution) on loopback over TLS with
basic auth, images built by hand as an OCI layout (FROM scratch: nothing downloaded) and pushed with ``skopeo``,
a second registry in proxy mode in front of the first, and tiny misbehaving servers (slow, 5xx)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pytest
from aws_sandbox import isolate_aws

from webhook.certs import write_certificates

if TYPE_CHECKING:
    from pathlib import Path

USERNAME = "ecr"
PASSWORD = "token-standing-in-for-ecr"  # noqa: S105 - a test credential
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REGISTRY_TOOLS = ("docker-registry", "skopeo", "htpasswd")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, a default region, no profile, endpoint, config file or instance metadata."""
    isolate_aws(monkeypatch, tmp_path, "us-east-1")


def require_registry_tools() -> None:
    """Skip (naming the install script) when the real tools are not installed."""
    missing = [tool for tool in REGISTRY_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run `bash hack/install-registry-tools.sh`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class OciImage:
    """A FROM-scratch image: one layer with one file, its config and its manifest, as bytes."""

    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return _sha256(self.manifest)


def build_image(content: str) -> OciImage:
    """An image whose one layer holds ``/hello.txt`` with ``content`` (different content, different digests)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = content.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    layer_tar = tar_bytes.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _sha256(layer),
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    return OciImage(manifest, {_sha256(layer): layer, _sha256(config): config, _sha256(manifest): manifest})


def write_layout(directory: Path, image: OciImage, tag: str) -> Path:
    """An OCI image layout directory holding ``image`` under ``tag``."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in image.blobs.items():
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": image.digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    return directory


@dataclass
class Certificates:
    """One test CA and a serving certificate for 127.0.0.1, shared by every registry of a test session."""

    directory: Path

    def __post_init__(self) -> None:
        write_certificates(self.directory, ["localhost"], ["127.0.0.1"])
        # skopeo reads every *.crt of a directory as a CA, and wants a *.cert beside any *.key: a CA-only directory.
        self.ca_dir.mkdir(exist_ok=True)
        shutil.copy(self.ca, self.ca_dir / "ca.crt")

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_dir(self) -> Path:
        return self.directory / "ca-only"

    @property
    def cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> Path:
        return self.directory / "tls.key"


@dataclass
class Registry:
    """A ``docker-registry`` process on 127.0.0.1 over TLS, with basic auth or anonymous, optionally a proxy.

    A proxy reaches its upstream anonymously: distribution 2.8's proxy only answers Bearer challenges upstream,
    and the upstream stands for a public registry such as quay.io anyway.
    """

    directory: Path
    certificates: Certificates
    upstream: Registry | None = None
    auth: bool = True
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.directory / "storage"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start (or restart, on the same port and storage) and wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        htpasswd = self.directory / "htpasswd"
        if self.auth and not htpasswd.exists():
            line = subprocess.run(
                ["htpasswd", "-nbB", USERNAME, PASSWORD], check=True, capture_output=True, text=True
            ).stdout
            htpasswd.write_text(line.strip() + "\n")
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {
                "addr": self.host,
                "secret": "test-secret",
                "tls": {"certificate": str(self.certificates.cert), "key": str(self.certificates.key)},
            },
        }
        if self.auth:
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(htpasswd)}}
        if self.upstream is not None:
            config["proxy"] = {"remoteurl": f"https://{self.upstream.host}"}
        config_file = self.directory / "config.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        env = {**os.environ, "SSL_CERT_FILE": str(self.certificates.ca)}  # Go trusts the test CA for the upstream
        self.log = (self.directory / "registry.log").open("ab")
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config_file)], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        self._wait_ready()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if hasattr(self, "log"):
            self.log.close()

    def _wait_ready(self, deadline: float = 15.0) -> None:
        context = ssl.create_default_context(cafile=str(self.certificates.ca))
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"docker-registry exited:\n{(self.directory / 'registry.log').read_text()}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"docker-registry not listening in {deadline}s")

    def push(self, image: OciImage, repository: str, tag: str, scratch: Path) -> None:
        """``skopeo copy`` the image from an OCI layout into ``repository:tag``."""
        layout = write_layout(scratch / f"layout-{image.digest[7:19]}", image, tag)
        subprocess.run(
            [
                "skopeo",
                "--insecure-policy",
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-cert-dir",
                str(self.certificates.ca_dir),
                *(["--dest-creds", f"{USERNAME}:{PASSWORD}"] if self.auth else ["--dest-no-creds"]),
                f"oci:{layout}:{tag}",
                f"docker://{self.host}/{repository}:{tag}",
            ],
            check=True,
            capture_output=True,
        )

    def has_manifest(self, repository: str, digest: str) -> bool:
        """Whether the manifest's revision is in this registry's own storage (a proxy: it was pulled through)."""
        revision = (
            self.storage
            / "docker/registry/v2/repositories"
            / repository
            / "_manifests/revisions/sha256"
            / digest.removeprefix("sha256:")
        )
        return revision.is_dir()


class _Handler(BaseHTTPRequestHandler):
    """Answers every request after ``delay`` seconds with ``status``."""

    status: ClassVar[int] = 200
    delay: ClassVar[float] = 0.0

    def _answer(self) -> None:
        time.sleep(self.delay)
        body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected failure"}]}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = _answer  # noqa: N815 - http.server's naming
    do_GET = _answer  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        del format, args


@dataclass
class FaultyRegistry:
    """An HTTPS server on 127.0.0.1 that answers every request with ``status`` after ``delay`` seconds."""

    certificates: Certificates
    status: int = 200
    delay: float = 0.0
    requests: list[str] = field(default_factory=list)

    def __enter__(self) -> Self:
        handler = type("Handler", (_Handler,), {"status": self.status, "delay": self.delay})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates.cert, self.certificates.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


@dataclass
class FakeEcrApi:
    """ECR's JSON API on plain HTTP on 127.0.0.1, for a real ``serve`` process (``AWS_ENDPOINT_URL_ECR``): answers
    ``DescribePullThroughCacheRules`` with ``rules`` (one page), or a 500 while ``failing``. In-process tests use
    botocore's Stubber instead; a separate process cannot be stubbed."""

    rules: list[dict[str, str]]
    failing: bool = False
    calls: int = 0

    def __enter__(self) -> Self:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = self.headers.get("X-Amz-Target", "")
                api.calls += 1
                answer: dict[str, Any]
                if api.failing or not target.endswith(".DescribePullThroughCacheRules"):
                    status, answer = 500, {"__type": "ServerException", "message": f"injected failure ({target})"}
                else:
                    status, answer = 200, {"pullThroughCacheRules": api.rules}
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"
