"""Serving TLS from files that rotate: one small object that loads, checks and swaps SSL contexts.

Shaped after controller-runtime's ``certwatcher`` and cert-manager's ``CertificateSource``: :meth:`reload` builds a
*new* context from the files and only switches to it when the pair loads (a mismatched key and certificate, seen
mid-rotation, leave the old one serving); new connections pick the current context up in the SNI callback, which
OpenSSL calls for every ClientHello. Calling ``load_cert_chain`` on the live context instead would fail every
handshake while the files disagree.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptography import x509

from webhook.exceptions import CertificateError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger("webhook.tls")  # a stable name: users filter logs on it

WATCH_INTERVAL: Final = 2.0
"""Seconds between checks of the files; kubelet updates Secret volumes about once a minute at most."""


@dataclass(frozen=True, slots=True)
class LoadedCertificate:
    """A context that serves, and facts about its certificate."""

    context: ssl.SSLContext
    not_after: dt.datetime
    fingerprint: tuple[tuple[int, int, int], ...]


def _stat(path: Path) -> tuple[int, int, int]:
    # Secret volumes swap a symlink (`..data`); stat follows it, so the inode changes on every update.
    status = os.stat(path)  # noqa: PTH116 - one call for inode, size and mtime
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def new_server_context() -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, HTTP/1.1 (the API server speaks it to webhooks)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _check_validity(path: Path, certificate: x509.Certificate, now: dt.datetime) -> None:
    """Refuse a certificate outside its validity window: a rotation to it would break every handshake.

    The files are read again at the next check, so a certificate issued a moment "in the future" (clock skew
    between the issuer and this node) is taken as soon as it becomes valid.
    """
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < not_before:
        raise CertificateError(f"{path} is not valid before {not_before.isoformat()}; keeping the current certificate")
    if now >= not_after:
        raise CertificateError(f"{path} expired at {not_after.isoformat()}; keeping the current certificate")


class CertificateSource:
    """The serving certificate, reloaded from ``cert_file`` and ``key_file`` when they change."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        on_reload: Callable[[bool, LoadedCertificate | None], None] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """Remember the files; nothing is read until :meth:`reload`. ``clock`` is what "now" is for validity."""
        self.cert_file = cert_file
        self.key_file = key_file
        self._clock = clock
        self._on_reload = on_reload
        self._current: LoadedCertificate | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedCertificate | None:
        """The certificate serving now, if any was loaded."""
        return self._current

    def healthy(self) -> tuple[bool, str]:
        """Ready to serve: a certificate is loaded and has not expired."""
        current = self._current
        if current is None:
            return False, f"no certificate loaded: {self.last_error or 'not loaded yet'}"
        if current.not_after <= self._clock():
            return False, f"certificate expired at {current.not_after.isoformat()}"
        return True, f"certificate valid until {current.not_after.isoformat()}"

    def load(self) -> LoadedCertificate:
        """Build and check a context from the files; raise :class:`CertificateError` if the pair cannot serve."""
        try:
            before = (_stat(self.cert_file), _stat(self.key_file))
            context = new_server_context()
            context.load_cert_chain(self.cert_file, self.key_file)
            certificate = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            after = (_stat(self.cert_file), _stat(self.key_file))
        except (OSError, ssl.SSLError, ValueError) as error:
            raise CertificateError(f"cannot serve {self.cert_file} with {self.key_file}: {error}") from error
        if before != after:
            raise CertificateError(f"{self.cert_file} or {self.key_file} changed while loading; retrying")
        _check_validity(self.cert_file, certificate, self._clock())
        return LoadedCertificate(context, certificate.not_valid_after_utc, after)

    def reload(self) -> bool:
        """Switch to the files' certificate if they changed and load; return whether it switched."""
        with self._lock:
            try:
                fingerprint = (_stat(self.cert_file), _stat(self.key_file))
            except OSError as error:
                return self._failed(f"cannot stat certificate files: {error}")
            if self._current is not None and self._current.fingerprint == fingerprint:
                return False
            try:
                loaded = self.load()
            except CertificateError as error:
                return self._failed(str(error))
            self._current = loaded
            self.last_error = None
        log.info("serving certificate loaded", extra={"not_after": loaded.not_after.isoformat()})
        if self._on_reload is not None:
            self._on_reload(True, loaded)  # noqa: FBT003 - positional flag of a callback
        return True

    def _failed(self, message: str) -> bool:
        first = self.last_error != message
        self.last_error = message
        if first:
            log.warning("certificate reload failed; keeping the current certificate", extra={"error": message})
            if self._on_reload is not None:
                self._on_reload(False, self._current)  # noqa: FBT003 - positional flag of a callback
        return False

    def server_context(self) -> ssl.SSLContext:
        """The context to listen with: serves the first certificate and hands each handshake the current one."""
        if self._current is None:
            self.reload()
        if self._current is None:
            raise CertificateError(self.last_error or "no certificate loaded")
        base = self._current.context
        base.sni_callback = self._select
        return base

    def _select(self, connection: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext) -> None:
        current = self._current
        if current is not None and connection.context is not current.context:
            connection.context = current.context

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Reload whenever the files change, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload)
