from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from reviews import make_pod
from strategies import pods

from webhook.core.patch import OPT_OUT_ANNOTATION, ORIGINAL_IMAGES_ANNOTATION, image_slots, plan_pod
from webhook.core.reasons import Reason

if TYPE_CHECKING:
    from webhook.core.rules import Rules

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
QUAY = "quay.io/prometheus/node-exporter:v1.8.2"
QUAY_CACHED = f"{REGISTRY}/quay/prometheus/node-exporter:v1.8.2"


def apply(pod: dict[str, Any], rules: Rules) -> dict[str, Any]:
    plan = plan_pod(pod, rules)
    result: dict[str, Any] = jsonpatch.apply_patch(pod, list(plan.patch))
    return result


def originals(pod: dict[str, Any]) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(pod["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION])
    return loaded


def test_rewrites_every_container_kind_and_records_originals(rules: Rules) -> None:
    pod = make_pod(QUAY, "nginx:1.27", init=("registry.k8s.io/pause:3.10",))
    pod["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "ghcr.io/nicolaka/netshoot:v0.13"}]
    patched = apply(pod, rules)
    spec = patched["spec"]
    assert spec["containers"][0]["image"] == QUAY_CACHED
    assert spec["containers"][1]["image"] == f"{REGISTRY}/docker-hub/library/nginx:1.27"
    assert spec["initContainers"][0]["image"] == f"{REGISTRY}/k8s/pause:3.10"
    assert spec["ephemeralContainers"][0]["image"] == f"{REGISTRY}/ghcr/nicolaka/netshoot:v0.13"
    assert originals(patched) == {
        "c0": QUAY,
        "c1": "nginx:1.27",
        "init0": "registry.k8s.io/pause:3.10",
        "debug": "ghcr.io/nicolaka/netshoot:v0.13",
    }


def test_image_volumes_are_rewritten(rules: Rules) -> None:
    pod = make_pod(QUAY)
    pod["spec"]["volumes"] = [
        {"name": "data", "image": {"reference": "quay.io/org/artifact:v1", "pullPolicy": "IfNotPresent"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    patched = apply(pod, rules)
    assert patched["spec"]["volumes"][0]["image"]["reference"] == f"{REGISTRY}/quay/org/artifact:v1"
    assert patched["spec"]["volumes"][1] == {"name": "tmp", "emptyDir": {}}
    assert originals(patched)["volumes/data"] == "quay.io/org/artifact:v1"


def test_annotation_key_is_pointer_escaped_and_added_to_existing_annotations(rules: Rules) -> None:
    pod = make_pod(QUAY, annotations={"team": "platform"})
    plan = plan_pod(pod, rules)
    assert plan.patch[-1]["path"] == "/metadata/annotations/ecr-ptc-webhook~1original-images"
    patched = jsonpatch.apply_patch(pod, list(plan.patch))
    assert patched["metadata"]["annotations"]["team"] == "platform"


@pytest.mark.parametrize("metadata", [{}, {"annotations": None}, {"name": "x"}])
def test_annotations_object_is_added_when_absent_or_null(rules: Rules, metadata: dict[str, Any]) -> None:
    pod = {"metadata": metadata, "spec": {"containers": [{"name": "a", "image": QUAY}]}}
    patched = apply(pod, rules)
    assert originals(patched) == {"a": QUAY}


def test_metadata_is_added_when_missing(rules: Rules) -> None:
    pod: dict[str, Any] = {"spec": {"containers": [{"name": "a", "image": QUAY}]}}
    assert originals(apply(pod, rules)) == {"a": QUAY}


def test_reinvocation_merges_with_the_earlier_record(rules: Rules) -> None:
    pod = apply(make_pod(QUAY), rules)
    pod["spec"]["containers"].append({"name": "sidecar", "image": "quay.io/org/sidecar:v2"})
    again = apply(pod, rules)
    assert again["spec"]["containers"][1]["image"] == f"{REGISTRY}/quay/org/sidecar:v2"
    assert originals(again) == {"c0": QUAY, "sidecar": "quay.io/org/sidecar:v2"}


def test_unreadable_earlier_record_is_replaced(rules: Rules) -> None:
    pod = make_pod(QUAY, annotations={ORIGINAL_IMAGES_ANNOTATION: "{not json"})
    assert originals(apply(pod, rules)) == {"c0": QUAY}


def test_nothing_to_rewrite_gives_no_patch(rules: Rules) -> None:
    pod = make_pod("public.ecr.aws/karpenter/controller:1.1.0", "gcr.io/k8s-staging-multitenancy/hnc-manager:v1.1")
    plan = plan_pod(pod, rules)
    assert plan.patch == ()
    assert [item.decision.reason for item in plan.decisions] == [Reason.PUBLIC_ECR, Reason.UPSTREAM_UNSUPPORTED]


def test_opted_out_pod_is_untouched(rules: Rules) -> None:
    pod = make_pod(QUAY, annotations={OPT_OUT_ANNOTATION: "disabled"})
    plan = plan_pod(pod, rules)
    assert plan.patch == ()
    assert [item.decision.reason for item in plan.decisions] == [Reason.POD_OPTED_OUT]


def test_odd_images_are_left_alone_and_valid_ones_rewritten(rules: Rules) -> None:
    pod = make_pod(QUAY)
    pod["spec"]["containers"] += [
        {"name": "empty", "image": ""},
        {"name": "missing"},
        {"name": "number", "image": 42},
        {"name": "upper", "image": "quay.io/Org/App"},
        "not-a-container",
    ]
    plan = plan_pod(pod, rules)
    assert [op["path"] for op in plan.patch] == [
        "/spec/containers/0/image",
        "/metadata/annotations",
    ]
    reasons = {item.slot.name: item.decision.reason for item in plan.decisions}
    assert reasons == {
        "c0": Reason.REWRITTEN,
        "empty": Reason.INVALID_REFERENCE,
        "missing": Reason.INVALID_REFERENCE,
        "number": Reason.INVALID_REFERENCE,
        "upper": Reason.INVALID_REFERENCE,
    }


@pytest.mark.parametrize("spec", [None, "x", [], {"containers": "x"}, {"containers": [None, 1]}, {"volumes": [{}]}])
def test_malformed_specs_yield_no_slots(spec: object) -> None:
    assert list(image_slots(spec)) == []


def test_ephemeral_update_only_touches_new_ephemeral_containers(rules: Rules) -> None:
    old = make_pod(QUAY)
    old["spec"]["ephemeralContainers"] = [{"name": "debug-1", "image": "busybox:1.36"}]
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"].append({"name": "debug-2", "image": "busybox:1.36"})
    plan = plan_pod(new, rules, ephemeral_only=old)
    assert [op["path"] for op in plan.patch] == ["/spec/ephemeralContainers/1/image"]
    assert [item.slot.name for item in plan.decisions] == ["debug-2"]


# --- properties -------------------------------------------------------------------------------------------------


def _strip(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod without images and our annotation: what a patch must never change."""
    stripped = copy.deepcopy(pod)
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for container in stripped.get("spec", {}).get(field, []):
            container.pop("image", None)
    for volume in stripped.get("spec", {}).get("volumes", []):
        if "image" in volume:
            volume["image"].pop("reference", None)
    metadata = stripped.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    annotations.pop(ORIGINAL_IMAGES_ANNOTATION, None)
    if not annotations:
        metadata.pop("annotations", None)
    if not metadata:
        stripped.pop("metadata", None)
    return stripped


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(pod=pods())
def test_patches_apply_change_only_images_and_are_idempotent(rules: Rules, pod: dict[str, Any]) -> None:
    plan = plan_pod(pod, rules)
    patched = jsonpatch.apply_patch(pod, list(plan.patch))  # raises if any op does not apply
    assert {op["op"] for op in plan.patch} <= {"add", "replace"}
    assert _strip(patched) == _strip(pod)
    assert plan_pod(patched, rules).patch == ()
    for item in plan.rewrites:
        assert jsonpatch.JsonPointer(item.slot.pointer()).resolve(patched) == item.decision.result
        assert originals(patched)[item.slot.key] == item.decision.image
    if not plan.rewrites:
        assert plan.patch == ()


def test_vetoed_rewrites_are_skipped_with_the_veto_reason(rules: Rules) -> None:
    pod = make_pod(QUAY, "nginx:1.27")
    plan = plan_pod(pod, rules, vetoes={"nginx:1.27": Reason.VERIFY_FAILED})
    assert [(item.decision.reason, item.decision.tier) for item in plan.decisions] == [
        (Reason.REWRITTEN, "quay"),
        (Reason.VERIFY_FAILED, "docker-hub"),
    ]
    assert originals(jsonpatch.apply_patch(pod, list(plan.patch))) == {"c0": QUAY}
