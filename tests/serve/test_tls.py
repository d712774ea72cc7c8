from __future__ import annotations

import datetime as dt
import ssl
from typing import TYPE_CHECKING

import pytest

from webhook.certs import certificate_pem, generate_ca, generate_serving, key_pem, write_certificates
from webhook.exceptions import CertificateError
from webhook.serve.tls import CertificateSource, LoadedCertificate, new_server_context

if TYPE_CHECKING:
    from pathlib import Path


def test_server_context_allows_tls_1_2_and_newer_over_http_1_1() -> None:
    context = new_server_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_not_ready_until_a_certificate_loads(tmp_path: Path) -> None:
    source = CertificateSource(tmp_path / "tls.crt", tmp_path / "tls.key")
    ready, detail = source.healthy()
    assert not ready
    assert "no certificate loaded" in detail
    assert source.reload() is False
    with pytest.raises(CertificateError, match=r"no certificate loaded|cannot stat"):
        source.server_context()
    write_certificates(tmp_path, ["localhost"])
    assert source.reload() is True
    assert source.healthy()[0]


def test_reload_swaps_only_to_a_matching_pair(tmp_path: Path) -> None:
    files = write_certificates(tmp_path, ["localhost"])
    events: list[tuple[bool, LoadedCertificate | None]] = []
    source = CertificateSource(files.cert, files.key, on_reload=lambda ok, loaded: events.append((ok, loaded)))
    source.server_context()
    first = source.current
    assert first is not None
    assert source.reload() is False  # unchanged files: nothing to do

    ca, ca_key = generate_ca()
    certificate, key = generate_serving(ca, ca_key, ["localhost"])
    files.key.write_bytes(key_pem(key))  # mid-rotation: new key, old certificate
    assert source.reload() is False
    assert source.current is first
    assert source.healthy()[0]  # the old pair keeps serving
    assert "cannot serve" in (source.last_error or "")

    files.cert.write_bytes(certificate_pem(certificate))
    assert source.reload() is True
    assert source.current is not first
    assert source.last_error is None
    assert [ok for ok, _ in events] == [True, False, True]


def test_write_certificates_makes_a_private_key_only_the_owner_reads(tmp_path: Path) -> None:
    files = write_certificates(tmp_path / "out", ["webhook.ns.svc"], ["127.0.0.1"])
    assert files.key.stat().st_mode & 0o777 == 0o600
    context = new_server_context()
    context.load_cert_chain(files.cert, files.key)
    client = ssl.create_default_context(cafile=str(files.ca))
    assert client.cert_store_stats()["x509_ca"] == 1


def test_serving_certificate_needs_a_name() -> None:
    ca, ca_key = generate_ca()
    with pytest.raises(ValueError, match="at least one DNS name or IP"):
        generate_serving(ca, ca_key, [])


@pytest.mark.parametrize(("shift", "refusal"), [(dt.timedelta(days=-2), "not valid before"), (None, "expired at")])
def test_a_rotation_to_a_certificate_outside_its_validity_keeps_the_old_one(
    tmp_path: Path, shift: dt.timedelta | None, refusal: str
) -> None:
    now = [dt.datetime.now(dt.UTC)]
    files = write_certificates(tmp_path, ["localhost"])
    source = CertificateSource(files.cert, files.key, clock=lambda: now[0])
    source.server_context()
    first = source.current
    assert first is not None

    ca, ca_key = generate_ca()
    certificate, key = generate_serving(ca, ca_key, ["localhost"])
    files.key.write_bytes(key_pem(key))
    files.cert.write_bytes(certificate_pem(certificate))
    now[0] = now[0] + shift if shift is not None else certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    assert source.reload() is False
    assert source.current is first
    assert refusal in (source.last_error or "")

    now[0] = dt.datetime.now(dt.UTC)  # the same files, now within their window: taken at the next check
    assert source.reload() is True
    assert source.current is not first
