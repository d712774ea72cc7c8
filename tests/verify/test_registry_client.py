"""The registry client (httpx mock transport) and the ECR token source (botocore Stubber against ECR's model)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber
from verify.verify_support import aws_env

from webhook.exceptions import ConfigError
from webhook.reference import parse
from webhook.registry_client import (
    ACCEPT,
    ENV_PASSWORD,
    ENV_USERNAME,
    AnonymousAuth,
    BasicAuth,
    EcrTokenSource,
    RegistryAuthError,
    RegistryClient,
    ecr_client_for,
    manifest_url,
    registry_id_of,
    token_source_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mypy_boto3_ecr import ECRClient

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
REFERENCE = parse(f"{REGISTRY}/quay/org/app:1.0")
DIGEST = "sha256:" + "b" * 64

pytestmark = pytest.mark.usefixtures(aws_env.__name__)


@pytest.fixture
def ecr() -> Iterator[tuple[ECRClient, Stubber]]:
    client = boto3.client("ecr", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


def token_answer(password: str, expires: float) -> dict[str, Any]:
    token = base64.b64encode(f"AWS:{password}".encode()).decode()
    return {
        "authorizationData": [
            {
                "authorizationToken": token,
                "expiresAt": dt.datetime.fromtimestamp(expires, dt.UTC),
                "proxyEndpoint": f"https://{REGISTRY}",
            }
        ]
    }


def header(password: str) -> str:
    return "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()


def test_the_ecr_token_is_reused_then_refreshed_at_three_quarters_of_its_life(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    clock = Clock(1_000_000.0)
    twelve_hours = 12 * 3600.0
    stubber.add_response("get_authorization_token", token_answer("one", clock.now + twelve_hours), {})
    stubber.add_response("get_authorization_token", token_answer("two", clock.now + 2 * twelve_hours), {})
    source = EcrTokenSource(client, clock=clock)

    async def scenario() -> list[str | None]:
        seen = [await source.authorization()]
        clock.now += 0.74 * twelve_hours
        seen.append(await source.authorization())
        clock.now += 0.02 * twelve_hours
        seen.append(await source.authorization())
        return seen

    assert asyncio.run(scenario()) == [header("one"), header("one"), header("two")]


def test_concurrent_callers_share_one_token_request(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_response("get_authorization_token", token_answer("one", 2e9), {})
    source = EcrTokenSource(client, clock=lambda: 1e9)

    async def scenario() -> set[str | None]:
        return set(await asyncio.gather(*(source.authorization() for _ in range(10))))

    assert asyncio.run(scenario()) == {header("one")}


def test_a_failed_refresh_keeps_a_token_that_is_still_valid(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    clock = Clock(1_000_000.0)
    stubber.add_response("get_authorization_token", token_answer("one", clock.now + 1000), {})
    stubber.add_client_error("get_authorization_token", "ThrottlingException", "slow down")
    stubber.add_client_error("get_authorization_token", "AccessDeniedException", "no ecr:GetAuthorizationToken")
    source = EcrTokenSource(client, clock=clock)

    async def scenario() -> None:
        await source.authorization()
        clock.now += 800  # past 75%, before expiry
        assert await source.authorization() == header("one")
        clock.now += 190  # within the expiry margin: no longer used
        with pytest.raises(RegistryAuthError, match="AccessDeniedException"):
            await source.authorization()

    asyncio.run(scenario())


def test_a_token_answer_without_a_token_is_an_auth_error(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_response("get_authorization_token", {"authorizationData": []}, {})
    with pytest.raises(RegistryAuthError, match="without a usable token"):
        asyncio.run(EcrTokenSource(client).authorization())


def test_token_source_for_picks_ecr_basic_or_anonymous() -> None:
    made: list[str] = []

    def factory() -> Any:
        made.append("ecr")
        return boto3.client("ecr", region_name="eu-west-1")

    assert isinstance(token_source_for(REGISTRY, {}, factory), EcrTokenSource)
    assert made == ["ecr"]
    basic = token_source_for("mirror.example:5000", {ENV_USERNAME: "u", ENV_PASSWORD: "p"}, factory)
    assert isinstance(basic, BasicAuth)
    assert isinstance(token_source_for("mirror.example:5000", {}, factory), AnonymousAuth)
    assert made == ["ecr"]


def test_ecr_client_and_account_come_from_the_registry_host() -> None:
    assert ecr_client_for(REGISTRY).meta.region_name == "eu-west-1"
    assert ecr_client_for("127.0.0.1:5000").meta.region_name == "us-east-1"
    assert registry_id_of(REGISTRY) == "123456789012"
    assert registry_id_of("127.0.0.1:5000") is None


def test_manifest_url() -> None:
    assert manifest_url(REFERENCE, DIGEST) == f"https://{REGISTRY}/v2/quay/org/app/manifests/{DIGEST}"


def client_with(handler: Callable[[httpx.Request], httpx.Response], auth: Any = None) -> RegistryClient:
    return RegistryClient(auth, transport=httpx.MockTransport(handler))


def test_head_sends_the_manifest_media_types_and_the_credential() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST, "Content-Type": "x"})

    async def scenario() -> None:
        client = client_with(handler, BasicAuth("AWS", "secret"))
        answer = await client.head_manifest(REFERENCE, "1.0")
        await client.aclose()
        assert answer.found
        assert answer.digest == DIGEST

    asyncio.run(scenario())
    request = seen[0]
    assert request.method == "HEAD"
    assert request.headers["accept"] == ACCEPT
    assert "application/vnd.oci.image.index.v1+json" in ACCEPT
    assert "application/vnd.docker.distribution.manifest.v2+json" in ACCEPT
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AWS:secret").decode()


class Rotating:
    """A token source whose credential changes after an invalidate (an expired or revoked ECR token)."""

    def __init__(self) -> None:
        self.generation = 0

    async def authorization(self) -> str | None:
        return f"Basic token-{self.generation}"

    def invalidate(self) -> None:
        self.generation += 1


def test_a_401_is_retried_once_with_a_fresh_credential() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.headers["authorization"] == "Basic token-1" else 401)

    auth = Rotating()

    async def scenario() -> int:
        client = client_with(handler, auth)
        answer = await client.head_manifest(REFERENCE, "1.0")
        await client.aclose()
        return answer.status

    assert asyncio.run(scenario()) == 200
    assert auth.generation == 1


def test_get_reports_the_registry_error() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "Requested image not found"}]}
        )

    async def scenario() -> str | None:
        client = client_with(handler)
        answer = await client.get_manifest(REFERENCE, "1.0")
        await client.aclose()
        return answer.error

    assert asyncio.run(scenario()) == "404 Not Found: MANIFEST_UNKNOWN Requested image not found"


def test_no_answer_is_status_zero_with_the_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def scenario() -> tuple[int, str | None]:
        client = client_with(handler)
        answer = await client.head_manifest(REFERENCE, "1.0")
        await client.aclose()
        return answer.status, answer.error

    assert asyncio.run(scenario()) == (0, "ConnectError: connection refused")


def test_an_auth_failure_is_status_zero_not_an_exception() -> None:
    class Broken:
        async def authorization(self) -> str | None:
            raise RegistryAuthError("ECR GetAuthorizationToken failed: AccessDenied")

        def invalidate(self) -> None:
            pass

    async def scenario() -> tuple[int, str | None]:
        client = client_with(lambda _: httpx.Response(200), Broken())
        answer = await client.head_manifest(REFERENCE, "1.0")
        await client.aclose()
        return answer.status, answer.error

    assert asyncio.run(scenario()) == (0, "ECR GetAuthorizationToken failed: AccessDenied")


def test_without_boto3_an_ecr_registry_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ConfigError, match=r"need boto3: install ecr-ptc-webhook\[aws\]"):
        ecr_client_for(REGISTRY)
