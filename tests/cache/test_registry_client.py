"""The registry client (httpx mock transport) and the ECR token source (botocore Stubber against ECR's model)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import boto3
import httpx
import pytest
from cache.cache_support import aws_env

from webhook.cache.registry_client import (
    ACCEPT,
    ENV_PASSWORD,
    ENV_USERNAME,
    AnonymousAuth,
    BasicAuth,
    EcrImageIndex,
    EcrTokenSource,
    ImagePresence,
    RegistryAuthError,
    RegistryClient,
    ecr_client_for,
    manifest_url,
    registry_id_of,
    token_source_for,
)
from webhook.core.reference import parse
from webhook.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from botocore.stub import Stubber
    from mypy_boto3_ecr import ECRClient

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
REFERENCE = parse(f"{REGISTRY}/quay/org/app:1.0")
DIGEST = "sha256:" + "b" * 64

pytestmark = pytest.mark.usefixtures(aws_env.__name__)


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


class CountingEcr:
    """The stubbed client, counting token requests; a request waits for ``gate`` when one is set."""

    def __init__(self, client: ECRClient) -> None:
        self.client = client
        self.calls = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def get_authorization_token(self) -> Any:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        return self.client.get_authorization_token()


def counting_source(client: ECRClient, clock: Clock) -> tuple[EcrTokenSource, CountingEcr]:
    counting = CountingEcr(client)
    return EcrTokenSource(cast("ECRClient", counting), clock=clock), counting


async def settled(source: EcrTokenSource) -> None:
    """Wait for a background refresh to end (no sleeping: the task itself is awaited)."""
    task = source._refreshing
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


TWELVE_HOURS = 12 * 3600.0


def test_the_ecr_token_is_reused_then_refreshed_at_three_quarters_of_its_life(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    clock = Clock(1_000_000.0)
    stubber.add_response("get_authorization_token", token_answer("one", clock.now + TWELVE_HOURS), {})
    stubber.add_response("get_authorization_token", token_answer("two", clock.now + 2 * TWELVE_HOURS), {})
    source = EcrTokenSource(client, clock=clock)

    async def scenario() -> list[str | None]:
        seen = [await source.authorization()]
        clock.now += 0.74 * TWELVE_HOURS
        seen.append(await source.authorization())
        clock.now += 0.02 * TWELVE_HOURS
        seen.append(await source.authorization())  # the refresh starts; the current token still serves
        await settled(source)
        seen.append(await source.authorization())
        return seen

    assert asyncio.run(scenario()) == [header("one"), header("one"), header("one"), header("two")]


def test_a_lookup_never_waits_for_a_refresh_while_the_token_is_valid(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    clock = Clock(1_000_000.0)
    stubber.add_response("get_authorization_token", token_answer("one", clock.now + TWELVE_HOURS), {})
    stubber.add_response("get_authorization_token", token_answer("two", clock.now + 2 * TWELVE_HOURS), {})
    source, counting = counting_source(client, clock)
    gate = threading.Event()

    async def scenario() -> list[str | None]:
        seen = [await source.authorization()]
        clock.now += 0.8 * TWELVE_HOURS
        counting.gate = gate  # ECR's API hangs
        counting.entered.clear()
        try:
            # Waiting on the refresh would never end before the gate opens: wait_for would time out.
            seen.append(await asyncio.wait_for(source.authorization(), timeout=5))
            seen.append(await asyncio.wait_for(source.authorization(), timeout=5))
            assert await asyncio.to_thread(counting.entered.wait, 5)  # the refresh is running meanwhile
            seen.append(await asyncio.wait_for(source.authorization(), timeout=5))
            assert counting.calls == 2  # one refresh, in the background
        finally:
            gate.set()
        await settled(source)
        seen.append(await source.authorization())
        return seen

    assert asyncio.run(scenario()) == [header("one"), header("one"), header("one"), header("one"), header("two")]


def test_a_failed_refresh_backs_off_instead_of_asking_on_every_call(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    clock = Clock(1_000_000.0)
    stubber.add_response("get_authorization_token", token_answer("one", clock.now + TWELVE_HOURS), {})
    stubber.add_client_error("get_authorization_token", "ThrottlingException", "slow down")
    stubber.add_client_error("get_authorization_token", "ThrottlingException", "slow down")
    stubber.add_response("get_authorization_token", token_answer("two", clock.now + 2 * TWELVE_HOURS), {})
    source, counting = counting_source(client, clock)

    async def calls_after(seconds: float) -> int:
        clock.now += seconds
        for _ in range(50):
            assert await source.authorization() == header("one")
            await settled(source)
        return counting.calls

    async def scenario() -> list[int]:
        await source.authorization()
        seen = [await calls_after(0.8 * TWELVE_HOURS)]  # fails: next attempt in 30 s
        seen.append(await calls_after(29))
        seen.append(await calls_after(2))  # fails again: next attempt in 60 s
        seen.append(await calls_after(59))
        clock.now += 2
        await source.authorization()
        await settled(source)
        assert await source.authorization() == header("two")
        seen.append(counting.calls)
        return seen

    assert asyncio.run(scenario()) == [2, 2, 3, 3, 4]


def test_the_backoff_never_runs_past_the_token_s_expiry(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    clock = Clock(1_000_000.0)
    stubber.add_response("get_authorization_token", token_answer("one", clock.now + 1000), {})
    stubber.add_client_error("get_authorization_token", "ThrottlingException", "slow down")
    stubber.add_response("get_authorization_token", token_answer("two", clock.now + 5000), {})
    source = EcrTokenSource(client, clock=clock, retry_first=600.0)

    async def scenario() -> str | None:
        await source.authorization()
        clock.now += 800  # past 75%: the refresh fails, the next attempt would be 600 s away
        await source.authorization()
        await settled(source)
        clock.now += 141  # 941: within the expiry margin, the backoff is cut short there
        return await source.authorization()

    assert asyncio.run(scenario()) == header("two")


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
        await settled(source)
        assert await source.authorization() == header("one")
        clock.now += 190  # within the expiry margin: no longer used
        with pytest.raises(RegistryAuthError, match="AccessDeniedException"):
            await source.authorization()

    asyncio.run(scenario())


def test_without_a_token_a_failed_request_is_not_repeated_before_the_backoff(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    clock = Clock(1_000_000.0)
    stubber.add_client_error("get_authorization_token", "AccessDeniedException", "no ecr:GetAuthorizationToken")
    stubber.add_response("get_authorization_token", token_answer("one", clock.now + TWELVE_HOURS), {})
    source, counting = counting_source(client, clock)

    async def scenario() -> str | None:
        for _ in range(10):
            with pytest.raises(RegistryAuthError, match="AccessDeniedException"):
                await source.authorization()
        assert counting.calls == 1
        clock.now += 31
        return await source.authorization()

    assert asyncio.run(scenario()) == header("one")
    assert counting.calls == 2


def test_a_rejected_token_is_replaced_before_it_is_sent_again(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_response("get_authorization_token", token_answer("one", 2e9), {})
    stubber.add_response("get_authorization_token", token_answer("two", 2e9), {})
    source = EcrTokenSource(client, clock=lambda: 1e9)

    async def scenario() -> list[str | None]:
        first = await source.authorization()
        source.invalidate()  # the registry answered 401 to it
        return [first, await source.authorization(), await source.authorization()]

    assert asyncio.run(scenario()) == [header("one"), header("two"), header("two")]


def test_warm_up_fetches_the_token_ahead_and_never_raises(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_client_error("get_authorization_token", "ServiceUnavailableException", "try later")
    stubber.add_response("get_authorization_token", token_answer("one", 2e9), {})
    clock = Clock(1e9)
    source, counting = counting_source(client, clock)
    registry = RegistryClient(source, transport=httpx.MockTransport(lambda _: httpx.Response(200)))

    async def scenario() -> str | None:
        await registry.warm_up()  # fails: logged, not raised
        clock.now += 31
        await registry.warm_up()
        calls = counting.calls
        token = await source.authorization()
        assert counting.calls == calls  # the token was already there
        await registry.aclose()
        return token

    assert asyncio.run(scenario()) == header("one")
    assert counting.calls == 2


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
    config: Any = ecr_client_for(REGISTRY).meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
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

    async def aclose(self) -> None:
        pass


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

        async def aclose(self) -> None:
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


ACCOUNT = "123456789012"


def image_detail(digest: str, tag: str) -> dict[str, Any]:
    return {"registryId": ACCOUNT, "repositoryName": "quay/org/app", "imageDigest": digest, "imageTags": [tag]}


@pytest.mark.parametrize(
    ("reference", "image_id"),
    [
        (REFERENCE, {"imageTag": "1.0"}),
        (parse(f"{REGISTRY}/quay/org/app@{DIGEST}"), {"imageDigest": DIGEST}),
        (parse(f"{REGISTRY}/quay/org/app:1.0@{DIGEST}"), {"imageDigest": DIGEST}),
        (parse(f"{REGISTRY}/quay/org/app"), {"imageTag": "latest"}),
    ],
)
def test_describe_images_says_an_image_is_cached(
    ecr: tuple[ECRClient, Stubber], reference: Any, image_id: dict[str, str]
) -> None:
    client, stubber = ecr
    expected = {"registryId": ACCOUNT, "repositoryName": "quay/org/app", "imageIds": [image_id]}
    stubber.add_response("describe_images", {"imageDetails": [image_detail(DIGEST, "1.0")]}, expected)
    presence = asyncio.run(EcrImageIndex(client, ACCOUNT).presence(reference))
    assert presence == ImagePresence(cached=True, digest=DIGEST)


@pytest.mark.parametrize("code", ["ImageNotFoundException", "RepositoryNotFoundException"])
def test_describe_images_not_found_means_not_cached(ecr: tuple[ECRClient, Stubber], code: str) -> None:
    client, stubber = ecr
    stubber.add_client_error("describe_images", code, "not here")
    assert asyncio.run(EcrImageIndex(client, ACCOUNT).presence(REFERENCE)) == ImagePresence(cached=False)


def test_describe_images_refused_cannot_tell(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_client_error("describe_images", "AccessDeniedException", "no ecr:DescribeImages")
    presence = asyncio.run(EcrImageIndex(client, ACCOUNT).presence(REFERENCE))
    assert presence.cached is None
    assert "AccessDeniedException" in presence.error
