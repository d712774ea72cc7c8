"""The cache registry's HTTP API (OCI distribution) for manifests, and where its credentials come from.

An edge: ``httpx`` for HTTP/1.1 with keep-alive, ``boto3`` for ECR's ``GetAuthorizationToken`` and
``DescribeImages``. It answers what the registry said (:class:`ManifestAnswer`, :class:`ImagePresence`) and never
raises for a registry or network failure: the callers (:mod:`webhook.cache.verify`, :mod:`webhook.cache.warm`) turn
answers into outcomes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import logging
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx
import orjson

from webhook.core.registries import ECR_HOST_PATTERN
from webhook.exceptions import ConfigError, WebhookError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from mypy_boto3_ecr import ECRClient

    from webhook.core.reference import ImageReference

log = logging.getLogger("webhook.registry_client")  # a stable name: users filter logs on it

MANIFEST_MEDIA_TYPES: Final = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
"""What a runtime accepts when it pulls; a registry answers 404 to a HEAD whose Accept matches nothing it holds."""
ACCEPT: Final = ", ".join(MANIFEST_MEDIA_TYPES)
REQUEST_TIMEOUT: Final = 10.0
"""Seconds one registry request may take. Admission does not wait that long (it has its own budget); a lookup
left running past the budget finishes in the background and fills the cache for the next pod."""
MAX_CONNECTIONS: Final = 64
"""Connections to the registry kept at most; lookups beyond it queue for a connection."""
TOKEN_REFRESH_AT: Final = 0.75
"""Fraction of an ECR token's lifetime (12 h) after which it is refreshed."""
TOKEN_EXPIRY_MARGIN: Final = 60.0
"""Seconds before its expiry when a token is no longer used, even if a refresh failed."""
TOKEN_RETRY_FIRST: Final = 30.0
"""Seconds before a failed token request is tried again; doubled on each failure up to :data:`TOKEN_RETRY_MAX`."""
TOKEN_RETRY_MAX: Final = 300.0
AWS_CONNECT_TIMEOUT: Final = 2
AWS_READ_TIMEOUT: Final = 5
AWS_MAX_ATTEMPTS: Final = 3
"""The ECR API clients' limits (token, rules, images): seconds to connect, to read, and calls in all (the first and
its retries); a hung call ends in seconds, not the SDK's minutes."""
ERROR_TEXT_MAX: Final = 300

ENV_CA_FILE: Final = "ECR_PTC_WEBHOOK_REGISTRY_CA_FILE"
"""PEM bundle to trust for the registry instead of the system's (tests, a private mirror)."""
ENV_USERNAME: Final = "ECR_PTC_WEBHOOK_REGISTRY_USERNAME"
ENV_PASSWORD: Final = "ECR_PTC_WEBHOOK_REGISTRY_PASSWORD"  # noqa: S105 - the variable's name, not a password
"""Basic auth for a registry that is not ECR (ECR hosts always use ``GetAuthorizationToken``)."""


class RegistryAuthError(WebhookError):
    """No credential for the registry could be had (ECR token call failed, no valid token left)."""


@dataclass(frozen=True, slots=True)
class ManifestAnswer:
    """What the registry said about one manifest: its HTTP status (0 when it did not answer) and details."""

    status: int
    digest: str | None = None
    """``Docker-Content-Digest`` of the manifest, when the registry sent it."""
    media_type: str | None = None
    error: str | None = None
    """The registry's error (its JSON ``errors`` or the status line), or why no answer came."""
    body: bytes = b""
    """The manifest (GET only)."""

    @property
    def found(self) -> bool:
        """Whether the manifest resolved."""
        return self.status == httpx.codes.OK


class TokenSource(Protocol):
    """Where the registry's ``Authorization`` header comes from."""

    async def authorization(self) -> str | None:
        """The header value (``Basic ...``), or ``None`` to ask anonymously; raises :class:`RegistryAuthError`."""
        ...

    def invalidate(self) -> None:
        """Forget the current credential (the registry answered 401 to it)."""
        ...

    async def aclose(self) -> None:
        """Stop any background work."""
        ...


class AnonymousAuth:
    """No credential: a public registry or one that needs none."""

    async def authorization(self) -> str | None:
        """Always ``None``."""
        return None

    def invalidate(self) -> None:
        """Nothing to forget."""

    async def aclose(self) -> None:
        """Nothing to stop."""


class BasicAuth:
    """A fixed username and password (tests use it in place of the ECR token)."""

    def __init__(self, username: str, password: str) -> None:
        """Encode the credential once."""
        self._header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")

    async def authorization(self) -> str | None:
        """The Basic header."""
        return self._header

    def invalidate(self) -> None:
        """A fixed credential cannot be refreshed."""

    async def aclose(self) -> None:
        """Nothing to stop."""


class EcrTokenSource:
    """ECR's ``GetAuthorizationToken`` (``AWS:password``, valid 12 h), refreshed at 75% of its lifetime.

    A lookup never waits for a refresh while the current token is valid: the refresh runs in the background and the
    current token is handed out meanwhile. Only without a usable token (the first call, an expired or rejected one)
    does a caller wait, and concurrent callers share that one request. A failed request is not repeated before a
    backoff (30 s, doubling up to 5 min, and never past the current token's expiry); until then a caller without a
    usable token gets the last error at once.
    """

    def __init__(
        self,
        ecr: ECRClient,
        *,
        refresh_at: float = TOKEN_REFRESH_AT,
        retry_first: float = TOKEN_RETRY_FIRST,
        retry_max: float = TOKEN_RETRY_MAX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Use ``ecr`` (a boto3 ECR client in the cache's region); ``clock`` is Unix time."""
        self._ecr = ecr
        self._refresh_at = refresh_at
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._clock = clock
        self._header: str | None = None
        self._expires = 0.0
        self._rejected = False
        """The registry answered 401 to the current token: wait for a new one rather than send it again."""
        self._refresh_after = 0.0
        """When to request a new token: 75% of the current one's life, or the end of a backoff after a failure."""
        self._backoff = 0.0
        self._error: str | None = None
        """Why the last request failed (``None`` once one succeeds)."""
        self._refreshing: asyncio.Task[None] | None = None

    async def authorization(self) -> str | None:
        """The Basic header with a token that is not about to expire; raises :class:`RegistryAuthError` if none."""
        now = self._clock()
        if self._usable(now):
            if now >= self._refresh_after:
                self._start_refresh()  # in the background: the current token serves meanwhile
            return self._header
        if self._refreshing is None:
            if self._error is not None and now < self._refresh_after:
                raise RegistryAuthError(f"{self._error} (next attempt in {self._refresh_after - now:.0f}s)")
            self._start_refresh()
        assert self._refreshing is not None  # noqa: S101 - _start_refresh sets it
        await asyncio.shield(self._refreshing)  # a caller that gives up does not cancel the shared request
        if not self._usable(self._clock()):
            raise RegistryAuthError(self._error or "ECR GetAuthorizationToken gave no usable token")
        return self._header

    def invalidate(self) -> None:
        """The registry refused the current token: the next call waits for a new one (unless backing off)."""
        self._rejected = True
        if self._error is None:
            self._refresh_after = 0.0

    async def aclose(self) -> None:
        """Stop a refresh in progress."""
        task, self._refreshing = self._refreshing, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _usable(self, now: float) -> bool:
        return self._header is not None and not self._rejected and now < self._expires - TOKEN_EXPIRY_MARGIN

    def _start_refresh(self) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh(), name="ecr token refresh")

    async def _refresh(self) -> None:
        try:
            token, expires = await asyncio.to_thread(self._request)
        except RegistryAuthError as error:
            self._failed(str(error))
        else:
            now = self._clock()
            self._header = f"Basic {token}"
            self._expires = expires
            self._rejected = False
            self._refresh_after = now + max(expires - now, 0.0) * self._refresh_at
            self._backoff = 0.0
            self._error = None
        finally:
            self._refreshing = None

    def _request(self) -> tuple[str, float]:
        try:
            answer = self._ecr.get_authorization_token()
            data = answer["authorizationData"][0]
            token = data["authorizationToken"]
            expires_at = data["expiresAt"]
            base64.b64decode(token, validate=True)
        except (KeyError, IndexError, binascii.Error) as error:
            raise RegistryAuthError(f"ECR GetAuthorizationToken answered without a usable token: {error!r}") from None
        except Exception as error:  # botocore's errors have no common base worth naming; all mean "no token"
            raise RegistryAuthError(f"ECR GetAuthorizationToken failed: {error}") from error
        return token, expires_at.timestamp() if isinstance(expires_at, dt.datetime) else float(expires_at)

    def _failed(self, error: str) -> None:
        now = self._clock()
        self._backoff = min(self._backoff * 2, self._retry_max) if self._backoff else self._retry_first
        self._refresh_after = now + self._backoff
        if self._usable(now):
            # Keep one attempt before the current token stops being used.
            self._refresh_after = min(self._refresh_after, max(self._expires - TOKEN_EXPIRY_MARGIN, now))
        self._error = error
        # One line, no traceback: with ECR's API unreachable it repeats every backoff.
        log.warning(
            "ECR token request failed; %s",
            "the current token is still used" if self._usable(now) else "registry lookups fail until one succeeds",
            extra={"error": error, "retry_in_seconds": round(self._refresh_after - now, 1)},
        )


class RegistryClient:
    """HEAD and GET of manifests on a registry over HTTPS, with keep-alive connections and a token source."""

    def __init__(
        self,
        auth: TokenSource | None = None,
        *,
        ca_file: Path | None = None,
        timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Talk HTTPS, trusting ``ca_file`` when given (else the system's CAs); ``transport`` is for tests."""
        self._auth: TokenSource = auth if auth is not None else AnonymousAuth()
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": ACCEPT, "User-Agent": "ecr-ptc-webhook"},
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def head_manifest(self, reference: ImageReference, identifier: str) -> ManifestAnswer:
        """HEAD ``/v2/<path>/manifests/<identifier>`` (a tag or a digest) on the reference's registry."""
        return await self._manifest("HEAD", reference, identifier)

    async def get_manifest(self, reference: ImageReference, identifier: str) -> ManifestAnswer:
        """GET the manifest: the body, and the registry's error message when it refuses."""
        return await self._manifest("GET", reference, identifier)

    async def warm_up(self) -> None:
        """Fetch the credential now (ECR's token), so that the first lookup does not wait for it; never raises."""
        with contextlib.suppress(RegistryAuthError):  # the token source logged it; a lookup tries again later
            await self._auth.authorization()

    async def aclose(self) -> None:
        """Close the connections and stop a token refresh in progress."""
        await self._auth.aclose()
        await self._client.aclose()

    async def _manifest(self, method: str, reference: ImageReference, identifier: str) -> ManifestAnswer:
        url = manifest_url(reference, identifier)
        try:
            response = await self._send(method, url)
            if response.status_code == httpx.codes.UNAUTHORIZED:
                # An ECR token can be revoked or expire early (clock skew): one retry with a fresh one.
                self._auth.invalidate()
                response = await self._send(method, url)
        except RegistryAuthError as error:
            return ManifestAnswer(0, error=str(error))
        except httpx.HTTPError as error:
            return ManifestAnswer(0, error=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        return _answer(response)

    async def _send(self, method: str, url: str) -> httpx.Response:
        headers = {}
        authorization = await self._auth.authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        return await self._client.request(method, url, headers=headers)


def manifest_url(reference: ImageReference, identifier: str) -> str:
    """``https://<registry>/v2/<path>/manifests/<tag or digest>``."""
    return f"https://{reference.domain}/v2/{reference.path}/manifests/{identifier}"


def _answer(response: httpx.Response) -> ManifestAnswer:
    headers = response.headers
    status = response.status_code
    if status == httpx.codes.OK:
        return ManifestAnswer(
            status,
            digest=headers.get("docker-content-digest"),
            media_type=headers.get("content-type"),
            body=response.content,
        )
    return ManifestAnswer(status, error=_error_text(response))


def _error_text(response: httpx.Response) -> str:
    """The registry's own words: the first entry of its JSON ``errors``, else the status line."""
    text = f"{response.status_code} {response.reason_phrase}".strip()
    try:
        decoded: Any = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return text
    errors = decoded.get("errors") if isinstance(decoded, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        text = f"{text}: {first.get('code', '')} {first.get('message', '')}".strip()
    return text[:ERROR_TEXT_MAX]


def token_source_for(registry: str, env: Mapping[str, str], ecr_client: Callable[[], ECRClient]) -> TokenSource:
    """ECR's token for an ECR host; else Basic auth from ``ECR_PTC_WEBHOOK_REGISTRY_USERNAME``/``..._PASSWORD``."""
    if ECR_HOST_PATTERN.fullmatch(registry.lower()):
        return EcrTokenSource(ecr_client())
    username, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if username and password is not None:
        return BasicAuth(username, password)
    return AnonymousAuth()


def ecr_client_for(registry: str) -> ECRClient:
    """A boto3 ECR client in the registry's region (from its host; the SDK's default region for other hosts)."""
    try:
        import boto3  # noqa: PLC0415 - boto3 is the `aws` extra: imported only where ECR is actually used
    except ImportError:
        raise ConfigError(
            "`rules: discover` and `verify: true` with an ECR registry call the AWS API and need boto3: "
            "install ecr-ptc-webhook[aws]"
        ) from None

    from botocore.config import Config as AwsConfig  # noqa: PLC0415 - likewise

    match = ECR_HOST_PATTERN.fullmatch(registry.lower())
    region = match.group("region") if match else None
    limits = AwsConfig(
        connect_timeout=AWS_CONNECT_TIMEOUT,
        read_timeout=AWS_READ_TIMEOUT,
        # botocore's `max_attempts` counts retries (3 would mean 4 calls); `total_max_attempts` counts every call.
        retries={"mode": "standard", "total_max_attempts": AWS_MAX_ATTEMPTS},
    )
    client: ECRClient = boto3.client("ecr", region_name=region, config=limits)
    return client


def registry_id_of(registry: str) -> str | None:
    """The AWS account of an ECR registry host."""
    match = ECR_HOST_PATTERN.fullmatch(registry.lower())
    return match.group("account") if match else None


@dataclass(frozen=True, slots=True)
class ImagePresence:
    """Whether the cache holds an image, as ECR's ``DescribeImages`` says (``cached`` is ``None``: cannot tell)."""

    cached: bool | None
    digest: str = ""
    error: str = ""


NOT_CACHED_ERRORS: Final = frozenset({"ImageNotFoundException", "RepositoryNotFoundException"})
"""``DescribeImages`` errors that mean "not in the cache yet" (a pull-through repository is created on first pull)."""


class EcrImageIndex:
    """ECR's ``DescribeImages``: is an image in the cache already? A control-plane read that imports nothing."""

    def __init__(self, ecr: ECRClient, registry_id: str | None = None) -> None:
        """Ask ``ecr`` (the cache's region) about repositories of the account ``registry_id``."""
        self._ecr = ecr
        self._registry_id = registry_id

    async def presence(self, reference: ImageReference) -> ImagePresence:
        """Look the reference's digest up (else its tag, else ``latest``) in its repository; never raises."""
        image_id: dict[str, str] = (
            {"imageDigest": reference.digest} if reference.digest else {"imageTag": reference.tag or "latest"}
        )
        kwargs: dict[str, Any] = {"repositoryName": reference.path, "imageIds": [image_id]}
        if self._registry_id:
            kwargs["registryId"] = self._registry_id
        try:
            answer = await asyncio.to_thread(self._ecr.describe_images, **kwargs)
        except Exception as error:  # noqa: BLE001 - botocore's errors: "not found" is an answer, the rest "cannot tell"
            if _aws_error_code(error) in NOT_CACHED_ERRORS:
                return ImagePresence(cached=False)
            return ImagePresence(cached=None, error=f"ECR DescribeImages failed: {error}"[:ERROR_TEXT_MAX])
        details = answer.get("imageDetails", [])
        if not details:
            return ImagePresence(cached=False)
        return ImagePresence(cached=True, digest=str(details[0].get("imageDigest", "")))


def _aws_error_code(error: Exception) -> str:
    """The ``Error.Code`` of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
