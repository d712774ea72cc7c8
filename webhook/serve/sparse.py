"""A sparse decode of an AdmissionReview: only the fields a decision reads, the rest skipped (still checked as JSON).

Decoding a whole realistic pod with orjson was a third of an admission's CPU (issue 13): env, probes, resources and
volumes are read by nothing here. msgspec decodes into the typed shapes below and skips every other member, so a
16.8 KB review decodes about three times faster. The result is handed to the same :func:`parse_review` as a plain
dict of the same values, so everything after the decode is the code the general path runs.

Whatever these shapes cannot hold exactly (a container that is not an object, an image that is not a string,
annotations that are not strings, invalid JSON, a body that is not UTF-8) returns ``None``, and the caller decodes
the general way: answers stay byte for byte what the general path gives (``tests/serve/test_connection.py``). One
difference is known and accepted: a float out of range (``1e999``) in a member that is skipped is refused by orjson
(400) and accepted here; the API server, whose encoder cannot write such a number, never sends one.

**A field the core starts to read must be added here** (``imagePullSecrets`` is, for the private-image rules); the
differential test then checks it, as long as ``tests/strategies.pods`` generates it.

The decoded shapes also key the answer cache (``webhook.core.review_cache``) directly: the containers of each kind
and the image volumes are hashable as decoded, so a Pod CREATE whose template was seen is answered from the cache
without building the pod as dicts at all (:meth:`SparseReview.cached`). The key holds every field the template key
holds, and the volumes' names and the containers' missing names besides, so it is never coarser (test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec
import orjson

from webhook.core.admission import API_VERSION, KIND, parse_review
from webhook.core.patch import annotation_state, annotations_state

if TYPE_CHECKING:
    from collections.abc import Hashable

    from webhook.core.admission import Mode, Outcome, Review
    from webhook.core.review_cache import ReviewCache
    from webhook.core.rules import Rules


# gc=False: decoded JSON holds no reference cycles, so the collector need not track these (fewer collections).
# frozen: hashable, a part of the answer cache's key.
class _Container(msgspec.Struct, frozen=True, gc=False):
    name: str | None = None
    image: str | None = None


class _ImageSource(msgspec.Struct, frozen=True, gc=False):
    reference: str | None = None


class _Volume(msgspec.Struct, frozen=True, gc=False):
    name: str | None = None
    image: _ImageSource | None = None


_NULL: Final = msgspec.Raw(b"null")


class _Spec(msgspec.Struct, gc=False, rename={"init_containers": "initContainers", "ephemeral": "ephemeralContainers"}):
    containers: tuple[_Container, ...] | None = None
    init_containers: tuple[_Container, ...] | None = None
    ephemeral: tuple[_Container, ...] | None = None
    volumes: tuple[_Volume, ...] | None = None
    imagePullSecrets: msgspec.Raw = _NULL  # noqa: N815 - the wire name. Not `Raw | None`: msgspec then takes null only


class _Metadata(msgspec.Struct, gc=False, rename={"generate_name": "generateName"}):
    name: str | None = None
    generate_name: str | None = None
    annotations: dict[str, str] | None = None


class _Pod(msgspec.Struct, gc=False):
    metadata: _Metadata | None = None
    spec: _Spec | None = None


class _Kind(msgspec.Struct, gc=False):
    group: str | None = None
    version: str | None = None
    kind: str | None = None


class _Request(
    msgspec.Struct,
    gc=False,
    rename={"sub_resource": "subResource", "old_object": "oldObject", "object_": "object"},
):
    uid: str | None = None
    kind: _Kind | None = None
    operation: str | None = None
    sub_resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    object_: _Pod | None = None
    old_object: _Pod | None = None


class _Review(msgspec.Struct, gc=False, rename={"api_version": "apiVersion"}):
    api_version: str | None = None
    kind: str | None = None
    request: _Request | None = None


_DECODER: Final = msgspec.json.Decoder(_Review)


class SparseReview:
    """A review decoded sparsely: answered from the cache as it is, or built into a :class:`Review` when needed."""

    __slots__ = ("_decoded", "key")

    def __init__(self, decoded: _Review) -> None:
        """Wrap ``decoded``; find its cache key if it is a valid Pod CREATE."""
        self._decoded = decoded
        self.key: Hashable | None = _template_key(decoded)
        """The answer cache's key for this pod's template; ``None`` unless this is a valid review of a Pod CREATE."""

    def cached(self, reviews: ReviewCache, rules: Rules, mode: Mode) -> Outcome | None:
        """The cached answer to this review, if there is one; its uid is that of the review that filled the cache."""
        request = self._decoded.request
        if self.key is None or request is None or request.object_ is None:
            return None
        metadata = request.object_.metadata
        return reviews.lookup(self.key, rules, mode, None if metadata is None else metadata.annotations)

    def identity(self) -> tuple[str, str, str]:
        """The uid, namespace and pod name (or ``generateName``) as :class:`Review` has them."""
        request = self._decoded.request
        if request is None:
            return "", "", ""
        pod = request.object_
        metadata = None if pod is None else pod.metadata
        name = request.name or ("" if metadata is None else metadata.name or metadata.generate_name or "")
        return request.uid or "", request.namespace or "", name

    def review(self) -> Review | None:
        """The whole review, as :func:`parse_review` returns it (raises :class:`AdmissionError` as it does).

        ``None`` when the general decode must decide after all (pull secrets orjson refuses, such as ``1e999``).
        """
        try:
            return _build(self._decoded)
        except orjson.JSONDecodeError:
            return None


def _template_key(decoded: _Review) -> Hashable | None:
    """What keys a valid Pod CREATE's answer: every field :func:`pod_template_key` reads, as decoded."""
    request = decoded.request
    if (
        request is None
        or decoded.api_version != API_VERSION
        or decoded.kind != KIND
        or not request.uid
        or request.operation != "CREATE"
        or request.sub_resource
        or request.kind is None
        or (request.kind.group, request.kind.version, request.kind.kind) != ("", "v1", "Pod")
        or request.object_ is None
    ):
        return None
    pod = request.object_
    metadata = pod.metadata
    state = annotation_state(None) if metadata is None else annotations_state(metadata.annotations)
    spec = pod.spec
    if spec is None:
        return ("sparse", None, None, None, (), False, state)
    volumes = (
        ()
        if spec.volumes is None
        else tuple((index, volume) for index, volume in enumerate(spec.volumes) if volume.image is not None)
    )
    secrets = bytes(spec.imagePullSecrets)
    pulls = secrets != b"null" and _is_non_empty_list(orjson.loads(secrets))
    return ("sparse", spec.containers, spec.init_containers, spec.ephemeral, volumes, pulls, state)


def _is_non_empty_list(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0


def decode_sparse(raw: bytes) -> SparseReview | None:
    """The review in ``raw``, decoded sparsely; ``None`` when the general decode must decide."""
    if not raw.isascii():
        try:
            raw.decode()  # skipped strings are not checked for UTF-8 by msgspec; orjson refuses invalid UTF-8
        except UnicodeDecodeError:
            return None
    try:
        return SparseReview(_DECODER.decode(raw))
    except (msgspec.DecodeError, RecursionError, orjson.JSONDecodeError):  # the last: pull secrets, as above
        return None


def _build(review: _Review) -> Review:
    request = review.request
    body: dict[str, Any] = {"apiVersion": review.api_version, "kind": review.kind}
    if request is not None:
        kind = request.kind
        body["request"] = {
            "uid": request.uid,
            "kind": None if kind is None else {"group": kind.group, "version": kind.version, "kind": kind.kind},
            "operation": request.operation,
            "subResource": request.sub_resource,
            "namespace": request.namespace,
            "name": request.name,
            "object": _pod(request.object_),
            "oldObject": _pod(request.old_object),
        }
    return parse_review(body)


def _pod(pod: _Pod | None) -> dict[str, Any] | None:
    if pod is None:
        return None
    metadata, spec = pod.metadata, pod.spec
    return {
        "metadata": None
        if metadata is None
        else {"name": metadata.name, "generateName": metadata.generate_name, "annotations": metadata.annotations},
        "spec": None if spec is None else _spec(spec),
    }


def _spec(spec: _Spec) -> dict[str, Any]:
    result: dict[str, Any] = {
        "containers": _containers(spec.containers),
        "initContainers": _containers(spec.init_containers),
        "ephemeralContainers": _containers(spec.ephemeral),
        "volumes": None
        if spec.volumes is None
        else [
            {"name": volume.name, "image": None if volume.image is None else {"reference": volume.image.reference}}
            for volume in spec.volumes
        ],
    }
    secrets = bytes(spec.imagePullSecrets)
    if secrets != b"null":  # absent or null: either way the general decode's spec.get() gives None
        result["imagePullSecrets"] = orjson.loads(secrets)
    return result


def _containers(containers: tuple[_Container, ...] | None) -> list[dict[str, str | None]] | None:
    if containers is None:
        return None
    return [{"name": container.name, "image": container.image} for container in containers]
