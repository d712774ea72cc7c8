"""AdmissionReview request -> response: the webhook as a function, no HTTP here.

Shaped after controller-runtime's ``admission`` package: :func:`parse_review` validates the wire format,
:func:`review` decides, and the constructors :func:`allowed`, :func:`patched` and :func:`failed_open` say what
happened. This webhook never denies: every response has ``allowed: true``; at worst the pod goes through unchanged.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, NotRequired, TypedDict

import orjson

from webhook.core.patch import PodPlan, is_json_object, plan_pod
from webhook.core.reasons import POLICY_KEYS
from webhook.exceptions import AdmissionError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from webhook.core.patch import ImageDecision
    from webhook.core.reasons import Reason
    from webhook.core.rules import Rules

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"
EPHEMERAL_CONTAINERS: Final = "ephemeralcontainers"

WARNING_MAX: Final = 256
"""The API server truncates a warning past 256 characters..."""
WARNINGS_TOTAL_MAX: Final = 4096
"""...and drops every warning past 4096 characters in total."""
_SUMMARY_RESERVE: Final = 96


class Mode(StrEnum):
    """What a review may do: ``mutate`` patches, ``audit`` only reports."""

    MUTATE = "mutate"
    AUDIT = "audit"


class GroupVersionKind(TypedDict):
    """``request.kind``."""

    group: str
    version: str
    kind: str


class AdmissionResponse(TypedDict):
    """``response`` of an AdmissionReview."""

    uid: str
    allowed: Literal[True]
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    warnings: NotRequired[list[str]]


class AdmissionReviewResponse(TypedDict):
    """The body answered to the API server."""

    apiVersion: str
    kind: str
    response: AdmissionResponse


class Review(NamedTuple):  # one per request: a NamedTuple is built in a third of a frozen dataclass's time
    """The parts of an AdmissionReview request this webhook reads."""

    uid: str
    api_version: str
    operation: str
    kind: Mapping[str, Any]
    sub_resource: str
    namespace: str
    name: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None

    @property
    def targets_pod(self) -> bool:
        """Whether this is a (v1) Pod."""
        return (
            self.kind.get("group") == ""
            and self.kind.get("version") == "v1"
            and self.kind.get("kind") == "Pod"
            and is_json_object(self.object)
        )


class Outcome(NamedTuple):  # one per request, as Review
    """A review's response and the decisions behind it (for logs and metrics)."""

    body: AdmissionReviewResponse
    plan: PodPlan | None = None
    error: str | None = None

    def answering(self, request: Review) -> Outcome:
        """The same answer for another review: its uid, everything else shared (see ``webhook.core.review_cache``)."""
        response = self.body["response"].copy()
        response["uid"] = request.uid
        body: AdmissionReviewResponse = {"apiVersion": request.api_version, "kind": KIND, "response": response}
        return Outcome(body, self.plan, self.error)


def parse_review(body: object) -> Review:
    """Validate a decoded AdmissionReview; raise :class:`AdmissionError` (400) naming what is wrong."""
    if not is_json_object(body):
        raise AdmissionError(400, "expected a JSON object (an AdmissionReview)")
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version != API_VERSION or kind != KIND:
        raise AdmissionError(
            400, f"expected apiVersion {API_VERSION} kind {KIND}, got apiVersion {api_version!r} kind {kind!r}"
        )
    request = body.get("request")
    if not is_json_object(request):
        raise AdmissionError(400, "AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise AdmissionError(400, "AdmissionReview request has no uid")
    request_kind = request.get("kind")
    obj, old = request.get("object"), request.get("oldObject")
    return Review(
        uid=uid,
        api_version=api_version,
        operation=_string(request.get("operation")),
        kind=request_kind if is_json_object(request_kind) else {},
        sub_resource=_string(request.get("subResource")),
        namespace=_string(request.get("namespace")),
        name=_string(request.get("name")) or _pod_name(obj),
        object=obj if is_json_object(obj) else None,
        old_object=old if is_json_object(old) else None,
    )


def review(request: Review, rules: Rules, mode: Mode, vetoes: Mapping[str, Reason] | None = None) -> Outcome:
    """Answer one review: a patch for pod creations and ``kubectl debug``, warnings in audit mode.

    ``vetoes`` (image -> reason) cancels rewrites an edge found unsafe, e.g. a target the cache cannot serve.
    Any unexpected exception fails open: the pod is admitted unchanged and the uid kept, never a 500.
    """
    try:
        plan = _plan(request, rules, vetoes)
    except Exception as error:  # noqa: BLE001 - fail open is the contract; the edge logs and counts it
        message = f"{type(error).__name__}: {error}"
        return Outcome(failed_open(request, "ecr-ptc-webhook: internal error; pod admitted unchanged"), error=message)
    if plan is None:
        return Outcome(allowed(request))
    if mode is Mode.AUDIT or rules.config.dry_run:
        return Outcome(allowed(request, audit_warnings(plan.decisions)), plan)
    if not plan.patch:
        return Outcome(allowed(request), plan)
    return Outcome(patched(request, plan.patch), plan)


def _plan(request: Review, rules: Rules, vetoes: Mapping[str, Reason] | None) -> PodPlan | None:
    if not request.targets_pod or request.object is None:
        return None
    if request.operation == "CREATE" and not request.sub_resource:
        return plan_pod(request.object, rules, vetoes=vetoes)
    if request.operation == "UPDATE" and request.sub_resource == EPHEMERAL_CONTAINERS:
        return plan_pod(request.object, rules, ephemeral_only=request.old_object or {}, vetoes=vetoes)
    return None


def allowed(request: Review, warnings: Sequence[str] = ()) -> AdmissionReviewResponse:
    """Admit unchanged, optionally with warnings for ``kubectl`` to show."""
    response: AdmissionResponse = {"uid": request.uid, "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return _envelope(request, response)


def patched(request: Review, patch: Sequence[Mapping[str, Any]]) -> AdmissionReviewResponse:
    """Admit with a JSON patch."""
    encoded = base64.b64encode(orjson.dumps(list(patch))).decode("ascii")
    response: AdmissionResponse = {"uid": request.uid, "allowed": True, "patchType": "JSONPatch", "patch": encoded}
    return _envelope(request, response)


def failed_open(request: Review, warning: str) -> AdmissionReviewResponse:
    """Admit unchanged after an internal error, telling the user why nothing was rewritten."""
    return allowed(request, [warning])


def audit_warnings(decisions: Sequence[ImageDecision]) -> list[str]:
    """What a dry run tells ``kubectl``, within the API server's warning limits.

    ``<original> -> <rewritten>`` per would-be rewrite, then ``<image> stays on its upstream: <reason> (`<key>`)``
    per image a policy keeps (``exclude``, ``include``, ``pullSecrets``, ``movingTags``, ``digests``), so a team sees
    what the defaults keep before it enables rewriting.
    """
    rewrites = [item for item in decisions if item.decision.rewrites]
    kept = [item for item in decisions if item.decision.reason in POLICY_KEYS]
    warnings: list[str] = []
    total = 0
    for index, item in enumerate([*rewrites, *kept]):
        warning = _warning(item)
        if total + len(warning) > WARNINGS_TOTAL_MAX - _SUMMARY_RESERVE:
            warnings.append(
                _summary(len(rewrites) - min(index, len(rewrites)), len(kept) - max(0, index - len(rewrites)))
            )
            break
        warnings.append(warning)
        total += len(warning)
    return warnings


def _warning(item: ImageDecision) -> str:
    decision = item.decision
    if decision.rewrites:
        warning = f"{decision.image} -> {decision.result}"
        if len(warning) <= WARNING_MAX:
            return warning
        return f"{item.slot.key}: would rewrite to the cache (tier {decision.tier}); see the webhook's logs"[
            :WARNING_MAX
        ]
    because = f"stays on its upstream: {decision.reason} (`{POLICY_KEYS[decision.reason]}`)"
    warning = f"{decision.image} {because}"
    if len(warning) <= WARNING_MAX:
        return warning
    return f"{item.slot.key}: {because}"[:WARNING_MAX]


def _summary(rewrites: int, kept: int) -> str:
    parts = [f"{rewrites} more would-be rewrites"] if rewrites else []
    parts += [f"{kept} more images kept by policy"] if kept else []
    return f"ecr-ptc-webhook: {' and '.join(parts)}; see the webhook's logs"


def _envelope(request: Review, response: AdmissionResponse) -> AdmissionReviewResponse:
    return {"apiVersion": request.api_version, "kind": KIND, "response": response}


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _pod_name(obj: object) -> str:
    """A pod's name, or its ``generateName`` prefix (CREATE requests for controller pods have no name yet)."""
    metadata = obj.get("metadata") if is_json_object(obj) else None
    if not is_json_object(metadata):
        return ""
    return _string(metadata.get("name")) or _string(metadata.get("generateName"))
