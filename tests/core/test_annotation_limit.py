"""The original-images record never pushes a pod over Kubernetes' 262,144 bytes of annotations."""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reviews import make_pod, make_review

from webhook.core.admission import Mode, parse_review, review
from webhook.core.patch import ANNOTATIONS_LIMIT, ORIGINAL_IMAGES_ANNOTATION, RECORD_POINTER, plan_pod
from webhook.core.review_cache import ReviewCache

if TYPE_CHECKING:
    from webhook.core.rules import Rules

QUAY = "quay.io/prometheus/node-exporter:v1.8.2"


def annotation_bytes(pod: dict[str, Any]) -> int:
    """What the API server sums: UTF-8 bytes of every key and value."""
    annotations = pod.get("metadata", {}).get("annotations") or {}
    return sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())


def padded(size: int, *, char: str = "x") -> dict[str, str]:
    """Annotations of exactly ``size`` bytes (``char`` may be multi-byte)."""
    key = "example.com/padding"
    width = len(char.encode())
    value = char * ((size - len(key)) // width)
    value += "y" * (size - len(key) - len(value.encode()))
    return {key: value}


def patched(pod: dict[str, Any], rules: Rules) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ops = [dict(op) for op in plan_pod(pod, rules).patch]
    result: dict[str, Any] = jsonpatch.apply_patch(pod, ops)
    return result, ops


def test_a_pod_near_the_limit_is_rewritten_without_the_record(rules: Rules) -> None:
    pod = make_pod(QUAY, annotations=padded(262_134))
    result, ops = patched(pod, rules)
    assert result["spec"]["containers"][0]["image"].endswith("/quay/prometheus/node-exporter:v1.8.2")
    assert ORIGINAL_IMAGES_ANNOTATION not in result["metadata"]["annotations"]
    assert annotation_bytes(result) == 262_134
    assert all(not op["path"].startswith("/metadata") for op in ops)


def test_the_record_pointer_is_where_the_record_is_written(rules: Rules) -> None:
    _, ops = patched(make_pod(QUAY, annotations={"a": "b"}), rules)
    assert ops[-1]["path"] == RECORD_POINTER == "/metadata/annotations/ecr-ptc-webhook~1original-images"


def test_a_record_too_large_on_its_own_is_left_out(rules: Rules) -> None:
    images = [f"quay.io/{'org-name-long/' * 14}image-{index}:v1.0.0" for index in range(1_200)]
    choices: tuple[dict[str, str] | None, ...] = (None, {})
    for given_annotations in choices:
        result, _ = patched(make_pod(*images, annotations=given_annotations), rules)
        assert all(c["image"].startswith("123456789012.dkr.ecr") for c in result["spec"]["containers"])
        assert ORIGINAL_IMAGES_ANNOTATION not in (result["metadata"].get("annotations") or {})
    no_metadata = make_pod(*images)
    del no_metadata["metadata"]
    result, _ = patched(no_metadata, rules)
    assert "metadata" not in result


def test_bytes_are_counted_not_characters(rules: Rules) -> None:
    """Three-byte characters: a length in code points would say there is room."""
    pod = make_pod(QUAY, annotations=padded(ANNOTATIONS_LIMIT - 60, char="€"))
    result, _ = patched(pod, rules)
    assert ORIGINAL_IMAGES_ANNOTATION not in result["metadata"]["annotations"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    others=st.integers(min_value=ANNOTATIONS_LIMIT - 400, max_value=ANNOTATIONS_LIMIT),
    earlier=st.booleans(),
    char=st.sampled_from(["x", "é", "€", "😀"]),
)
def test_the_record_is_written_exactly_when_it_fits(rules: Rules, others: int, earlier: bool, char: str) -> None:
    annotations = padded(others - 100, char=char)
    if earlier:
        annotations[ORIGINAL_IMAGES_ANNOTATION] = json.dumps({"gone": "quay.io/x/y"})
    pod = make_pod(QUAY, "nginx:1.27", annotations=annotations)
    result, _ = patched(pod, rules)
    record = result["metadata"]["annotations"].get(ORIGINAL_IMAGES_ANNOTATION)
    without = {k: v for k, v in annotations.items() if k != ORIGINAL_IMAGES_ANNOTATION}
    full = json.dumps({**({"gone": "quay.io/x/y"} if earlier else {}), "c0": QUAY, "c1": "nginx:1.27"})
    fits = (
        annotation_bytes({"metadata": {"annotations": without}})
        + len(ORIGINAL_IMAGES_ANNOTATION)
        + len(full.replace(" ", ""))
        <= ANNOTATIONS_LIMIT
    )
    if fits:
        assert json.loads(record) == json.loads(full)
    else:
        assert record == annotations.get(ORIGINAL_IMAGES_ANNOTATION)  # an earlier record is left as it was
    if fits or not earlier:
        assert annotation_bytes(result) <= ANNOTATIONS_LIMIT


@pytest.mark.parametrize("first_small", [True, False])
def test_the_template_cache_answers_each_pod_for_its_own_annotations(rules: Rules, first_small: bool) -> None:
    small = make_pod(QUAY, annotations={"a": "b"})
    large = make_pod(QUAY, annotations={"a": "b", **padded(ANNOTATIONS_LIMIT - 50)})
    cache = ReviewCache()
    order = [small, large, small, large] if first_small else [large, small, large, small]
    for pod in order:
        request = parse_review(make_review(copy.deepcopy(pod)))
        cached = cache.review(request, rules, Mode.MUTATE)
        assert cached.body == review(request, rules, Mode.MUTATE).body
        ops = json.loads(__import__("base64").b64decode(cached.body["response"]["patch"]))
        assert any(op["path"].startswith("/metadata") for op in ops) is (pod is small)
