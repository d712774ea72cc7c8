from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest
from reviews import make_pod, make_review

from webhook.core.admission import (
    WARNING_MAX,
    WARNINGS_TOTAL_MAX,
    Mode,
    audit_warnings,
    parse_review,
    review,
)
from webhook.core.config import parse_config
from webhook.core.patch import plan_pod
from webhook.core.rules import Rules
from webhook.exceptions import AdmissionError

QUAY = "quay.io/prometheus/node-exporter:v1.8.2"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def decode_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


def test_pod_create_is_patched_with_the_same_uid(rules: Rules) -> None:
    body = make_review(make_pod(QUAY))
    outcome = review(parse_review(body), rules, Mode.MUTATE)
    response = outcome.body["response"]
    assert outcome.body["apiVersion"] == "admission.k8s.io/v1"
    assert outcome.body["kind"] == "AdmissionReview"
    assert response["uid"] == body["request"]["uid"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(body["request"]["object"], decode_patch(dict(response)))
    assert patched["spec"]["containers"][0]["image"] == f"{REGISTRY}/quay/prometheus/node-exporter:v1.8.2"


def test_no_patch_field_when_nothing_changes(rules: Rules) -> None:
    outcome = review(parse_review(make_review(make_pod("public.ecr.aws/x/y:1"))), rules, Mode.MUTATE)
    assert outcome.body["response"] == {"uid": outcome.body["response"]["uid"], "allowed": True}


def test_audit_mode_warns_and_never_patches(rules: Rules) -> None:
    outcome = review(parse_review(make_review(make_pod(QUAY, "busybox:1.36", "busybox"))), rules, Mode.AUDIT)
    response = outcome.body["response"]
    assert "patch" not in response
    assert "patchType" not in response
    assert response["warnings"] == [
        f"{QUAY} -> {REGISTRY}/quay/prometheus/node-exporter:v1.8.2",
        f"busybox:1.36 -> {REGISTRY}/docker-hub/library/busybox:1.36",
        "busybox stays on its upstream: moving-tag (`movingTags: keep`)",
    ]


def test_dry_run_config_makes_mutate_audit() -> None:
    rules = Rules(parse_config({"registry": REGISTRY, "dryRun": True}))
    response = review(parse_review(make_review(make_pod(QUAY))), rules, Mode.MUTATE).body["response"]
    assert "patch" not in response
    assert response["warnings"]


def test_ephemeral_containers_update_patches_only_the_new_container(rules: Rules) -> None:
    old = make_pod(QUAY)
    new = make_pod(QUAY)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox:1.36"}]
    body = make_review(new, operation="UPDATE", sub_resource="ephemeralcontainers", old_pod=old)
    response = review(parse_review(body), rules, Mode.MUTATE).body["response"]
    assert decode_patch(dict(response)) == [
        {
            "op": "replace",
            "path": "/spec/ephemeralContainers/0/image",
            "value": f"{REGISTRY}/docker-hub/library/busybox:1.36",
        }
    ]


@pytest.mark.parametrize(
    ("operation", "sub_resource", "kind"),
    [
        ("UPDATE", None, "Pod"),
        ("DELETE", None, "Pod"),
        ("CREATE", "binding", "Pod"),
        ("UPDATE", "status", "Pod"),
        ("CREATE", None, "Deployment"),
    ],
)
def test_anything_else_is_allowed_untouched(rules: Rules, operation: str, sub_resource: str | None, kind: str) -> None:
    body = make_review(make_pod(QUAY), operation=operation, sub_resource=sub_resource, old_pod=make_pod(QUAY))
    body["request"]["kind"]["kind"] = kind
    outcome = review(parse_review(body), rules, Mode.MUTATE)
    assert outcome.body["response"] == {"uid": body["request"]["uid"], "allowed": True}
    assert outcome.plan is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}, "expected apiVersion"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}, "expected apiVersion"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "has no request"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}, "has no uid"),
    ],
)
def test_unusable_reviews_are_400(body: object, message: str) -> None:
    with pytest.raises(AdmissionError, match=message) as raised:
        parse_review(body)
    assert raised.value.status == 400


def test_unexpected_errors_fail_open_keeping_the_uid(rules: Rules, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(image: str, *_: object) -> None:
        raise RuntimeError(image)

    monkeypatch.setattr(rules, "decide", explode)
    body = make_review(make_pod(QUAY))
    outcome = review(parse_review(body), rules, Mode.MUTATE)
    assert outcome.body["response"]["uid"] == body["request"]["uid"]
    assert outcome.body["response"]["allowed"] is True
    assert "patch" not in outcome.body["response"]
    assert outcome.error == f"RuntimeError: {QUAY}"


def test_warnings_stay_within_the_api_servers_limits(rules: Rules) -> None:
    long_path = "/".join(["component"] * 20)
    pod = make_pod(*[f"quay.io/{long_path}/app{i}:v1" for i in range(60)])
    plan = plan_pod(pod, rules)
    warnings = audit_warnings(plan.decisions)
    assert all(len(warning) <= WARNING_MAX for warning in warnings)
    assert sum(len(warning) for warning in warnings) <= WARNINGS_TOTAL_MAX
    assert "more would-be rewrites" in warnings[-1]
    shown = len(warnings) - 1
    assert warnings[-1].startswith(f"ecr-ptc-webhook: {60 - shown} more")
