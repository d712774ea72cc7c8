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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec
import orjson

from webhook.core.admission import parse_review

if TYPE_CHECKING:
    from webhook.core.admission import Review


class _Container(msgspec.Struct):
    name: str | None = None
    image: str | None = None


class _ImageSource(msgspec.Struct):
    reference: str | None = None


class _Volume(msgspec.Struct):
    name: str | None = None
    image: _ImageSource | None = None


class _Spec(msgspec.Struct, rename={"init_containers": "initContainers", "ephemeral": "ephemeralContainers"}):
    containers: list[_Container] | None = None
    init_containers: list[_Container] | None = None
    ephemeral: list[_Container] | None = None
    volumes: list[_Volume] | None = None
    imagePullSecrets: msgspec.Raw | None = None  # noqa: N815 - the wire name


class _Metadata(msgspec.Struct, rename={"generate_name": "generateName"}):
    name: str | None = None
    generate_name: str | None = None
    annotations: dict[str, str] | None = None


class _Pod(msgspec.Struct):
    metadata: _Metadata | None = None
    spec: _Spec | None = None


class _Kind(msgspec.Struct):
    group: str | None = None
    version: str | None = None
    kind: str | None = None


class _Request(
    msgspec.Struct,
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


class _Review(msgspec.Struct, rename={"api_version": "apiVersion"}):
    api_version: str | None = None
    kind: str | None = None
    request: _Request | None = None


_DECODER: Final = msgspec.json.Decoder(_Review)


def decode_review(raw: bytes) -> Review | None:
    """The review in ``raw``, as :func:`parse_review` returns it; ``None`` when the general decode must decide.

    Raises :class:`webhook.exceptions.AdmissionError` exactly where the general path would (a body that is JSON and
    fits these shapes but is not a valid review).
    """
    if not raw.isascii():
        try:
            raw.decode()  # skipped strings are not checked for UTF-8 by msgspec; orjson refuses invalid UTF-8
        except UnicodeDecodeError:
            return None
    try:
        review = _DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
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
    if spec.imagePullSecrets is not None:
        result["imagePullSecrets"] = orjson.loads(bytes(spec.imagePullSecrets))
    return result


def _containers(containers: list[_Container] | None) -> list[dict[str, str | None]] | None:
    if containers is None:
        return None
    return [{"name": container.name, "image": container.image} for container in containers]
