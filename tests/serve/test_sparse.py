"""The sparse decode's cache key: never coarser than the template key it stands for."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from reviews import make_pod, make_review
from strategies import pods

from webhook.core.patch import CONTAINER_FIELDS, pod_template_key
from webhook.serve.sparse import decode_sparse


@st.composite
def pods_with_volumes_anywhere(draw: st.DrawFn) -> dict[str, Any]:
    """Pods whose image volumes sit among other volumes, and containers without a name."""
    pod = draw(pods())
    spec = pod["spec"]
    if "volumes" in spec:
        spec["volumes"] = draw(st.permutations([*spec["volumes"], {"name": "cfg", "configMap": {"name": "c"}}]))
    if spec.get("containers") and draw(st.booleans()):
        del spec["containers"][0]["name"]
    return pod


def template_key_from(key: Any) -> Any:
    """The template key, rebuilt from the sparse key alone: it exists, so equal sparse keys mean equal template keys."""
    _, containers, init, ephemeral, volumes, pulls, state = key
    slots: list[Any] = []
    fields = {"containers": containers, "initContainers": init, "ephemeralContainers": ephemeral}
    for field in CONTAINER_FIELDS:
        items = fields[field]
        slots.extend((field, index, item.name or "", item.image) for index, item in enumerate(items or ()))
    slots.extend(("volumes", index, volume.name or "", volume.image.reference) for index, volume in volumes)
    return tuple(slots), (pulls, *state)


def review_of(pod: dict[str, Any]) -> dict[str, Any]:
    review = make_review(make_pod("quay.io/a/b:1"))
    review["request"]["object"] = pod
    return review


@given(pod=pods_with_volumes_anywhere())
def test_the_sparse_key_determines_the_template_key(pod: dict[str, Any]) -> None:
    sparse = decode_sparse(json.dumps(review_of(pod)).encode())
    assert sparse is not None
    assert sparse.key is not None
    assert template_key_from(sparse.key) == pod_template_key(pod)


def test_only_a_valid_pod_create_has_a_key() -> None:
    review = review_of({"spec": {"containers": [{"name": "a", "image": "quay.io/a/b:1"}]}})
    assert decode_sparse(json.dumps(review).encode()).key is not None  # type: ignore[union-attr]
    for field, value in (("operation", "UPDATE"), ("subResource", "status"), ("uid", ""), ("kind", {"kind": "Pod"})):
        odd = json.loads(json.dumps(review))
        odd["request"][field] = value
        assert decode_sparse(json.dumps(odd).encode()).key is None  # type: ignore[union-attr]


def test_pull_secrets_orjson_refuses_leave_the_decode_to_the_general_path() -> None:
    body = json.dumps(review_of({"spec": {"containers": [{"name": "a", "image": "quay.io/a/b:1"}]}}))
    body = body.replace('"spec": {', '"spec": {"imagePullSecrets": [1e999], ')
    assert decode_sparse(body.encode()) is None
