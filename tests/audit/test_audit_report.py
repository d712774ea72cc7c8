"""Occurrences and the coverage report: the webhook's own decisions, added up by registry and tier."""

from __future__ import annotations

from typing import Any

from audit.audit_support import REGISTRY, audit_rules

from webhook.audit.report import (
    CHART_EXCLUDED_NAMESPACES,
    COVERAGE,
    FIELDS,
    NotSent,
    Report,
    format_table,
    not_sent_reason,
    occurrences,
    registry_of,
)
from webhook.core.patch import OPT_OUT_ANNOTATION, OPT_OUT_VALUE
from webhook.core.reasons import Reason
from webhook.core.workloads import workloads


def deployment(name: str, *images: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    containers = [{"name": f"c{index}", "image": image} for index, image in enumerate(images)]
    template: dict[str, Any] = {"metadata": {"annotations": annotations or {}}, "spec": {"containers": containers}}
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": "shop"}, "spec": {"template": template}}


def report_of(*documents: dict[str, Any]) -> Report:
    rules = audit_rules()
    report = Report()
    for document in documents:
        for workload in workloads(document):
            report.add(occurrences(workload, rules))
    return report


def test_occurrences_carry_the_rules_decision_and_where_it_is() -> None:
    rules = audit_rules()
    (workload,) = workloads(deployment("web", "quay.io/org/app:1", "nginx:1.27"))
    found = list(occurrences(workload, rules, source="app.yaml:3"))
    assert [item.decision for item in found] == [rules.decide("quay.io/org/app:1"), rules.decide("nginx:1.27")]
    assert found[0].as_dict() == {
        **rules.decide("quay.io/org/app:1").as_dict(),
        "kind": "Deployment",
        "namespace": "shop",
        "name": "web",
        "container": "c0",
        "source": "app.yaml:3",
    }
    assert tuple(found[0].as_dict()) == FIELDS


def test_the_opt_out_annotation_on_the_template_is_honoured() -> None:
    document = deployment("web", "quay.io/org/app:1", annotations={OPT_OUT_ANNOTATION: OPT_OUT_VALUE})
    (workload,) = workloads(document)
    (occurrence,) = occurrences(workload, audit_rules())
    assert occurrence.decision.reason == Reason.POD_OPTED_OUT


def test_image_volumes_and_missing_images_are_reported() -> None:
    pod = {
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app", "image": "quay.io/a/b:1"}],
            "volumes": [
                {"name": "models", "image": {"reference": "quay.io/models/m:1"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    (workload,) = workloads(pod)
    found = [(item.container, item.decision.reason) for item in occurrences(workload, audit_rules())]
    assert found == [
        ("init", Reason.INVALID_REFERENCE),
        ("app", Reason.REWRITTEN),
        ("volumes/models", Reason.REWRITTEN),
    ]


def test_every_reason_has_a_coverage() -> None:
    assert set(COVERAGE) == set(Reason) | set(NotSent)
    assert not {reason.value for reason in Reason} & {reason.value for reason in NotSent}


def test_registry_of() -> None:
    assert registry_of("nginx") == "docker.io"
    assert registry_of("Quay.IO/a/b") == "quay.io"
    assert registry_of("UPPER/Case") == "(invalid)"
    assert registry_of("") == "(invalid)"


def test_report_groups_by_registry_and_tier() -> None:
    report = report_of(
        deployment("web", "quay.io/org/app:1", "nginx:1.27", "registry.k8s.io/pause:3.9"),
        deployment("api", "quay.io/org/api:2", "nginx:1.27", "ghcr.io/org/tool:3"),
        deployment(
            "legacy",
            "gcr.io/proj/old:1",
            f"{REGISTRY}/quay/org/app:1",
            "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/coredns:v1",
        ),
    )
    groups = {(group.registry, group.tier): group for group in report.sorted_groups()}
    assert list(groups) == sorted(groups, key=lambda key: (key[0], key[1] or ""))
    quay = groups["quay.io", "quay"]
    assert (len(quay.images), quay.pods, quay.rewrite, dict(quay.skipped)) == (2, 2, 2, {})
    hub = groups["docker.io", "docker-hub"]
    assert (len(hub.images), hub.pods, hub.rewrite, dict(hub.skipped)) == (1, 2, 0, {Reason.TIER_DISABLED: 2})
    assert dict(groups["gcr.io", None].skipped) == {Reason.UPSTREAM_UNSUPPORTED: 1}
    assert dict(groups[REGISTRY, None].skipped) == {Reason.ALREADY_CACHED: 1}
    assert (report.pods, report.occurrences) == (3, 9)
    assert dict(report.coverage) == {"covered": 4, "exempt": 1, "uncovered": 4}
    assert report.uncovered == 4
    assert report.tier_disabled == 3
    assert {tier: group.skipped[Reason.TIER_DISABLED] for tier, group in report.tiers_to_enable().items()} == {
        "docker-hub": 2,
        "ghcr": 1,
    }


def test_pods_count_each_pod_spec_once_per_group() -> None:
    report = report_of(deployment("web", "quay.io/a:1", "quay.io/b:1", "quay.io/a:1"))
    (group,) = report.groups.values()
    assert (len(group.images), group.pods, group.rewrite) == (2, 1, 3)


def test_the_table_says_what_to_enable_and_what_no_tier_covers() -> None:
    text = format_table(
        report_of(
            deployment("web", "quay.io/org/app:1", "nginx:1.27"),
            deployment("legacy", "gcr.io/proj/old:1", "UPPER/Case"),
        )
    )
    lines = text.splitlines()
    assert lines[0].split() == ["REGISTRY", "TIER", "IMAGES", "PODS", "REWRITE", "SKIPPED"]
    assert lines[1].split() == ["(invalid)", "-", "1", "1", "0", "invalid-reference=1"]
    assert lines[2].split() == ["docker.io", "docker-hub", "1", "1", "0", "tier-disabled=1"]
    assert lines[4].split() == ["quay.io", "quay", "1", "1", "1", "-"]
    assert "2 pod specs, 4 image occurrences (4 distinct images): 1 covered, 0 exempt" in text
    assert "Enable tier docker-hub (opt-in: needs a Secrets Manager credential) to cover 1 more occurrences" in text
    assert "Uncovered whatever the tiers: gcr.io: upstream-unsupported=1." in text


def test_an_empty_report_still_prints_a_header() -> None:
    text = format_table(Report())
    assert text.splitlines()[0].split()[0] == "REGISTRY"
    assert "0 pod specs, 0 image occurrences (0 distinct images)" in text


def test_a_tier_counts_each_pod_spec_once_whatever_the_host() -> None:
    # docker.io and registry-1.docker.io are two registries of one tier: one pod spec, not two.
    report = report_of(deployment("web", "nginx:1", "registry-1.docker.io/library/redis:7"))
    docker_hub = report.tiers_to_enable()["docker-hub"]
    assert (docker_hub.skipped[Reason.TIER_DISABLED], len(docker_hub.images), docker_hub.pods) == (2, 2, 1)
    assert "to cover 2 more occurrences (images: 2, pod specs: 1)." in format_table(report)


def test_pods_not_sent_to_the_webhook_need_no_tier() -> None:
    rules = audit_rules()
    report = Report()
    (workload,) = workloads(deployment("web", "nginx:1"))
    report.add(occurrences(workload, rules, not_sent=NotSent.NAMESPACE_EXCLUDED))
    assert (report.tiers_to_enable(), report.tier_disabled, report.uncovered) == ({}, 0, 0)


def pod(annotations: dict[str, str] | None = None, namespace: str = "shop") -> dict[str, Any]:
    metadata = {"name": "p", "namespace": namespace, "annotations": annotations or {}}
    return {"kind": "Pod", "metadata": metadata, "spec": {"containers": [{"name": "c", "image": "quay.io/a/b:1"}]}}


def test_why_a_pod_is_not_sent_to_the_webhook() -> None:
    mirror = {"kubernetes.io/config.mirror": "5f3c", "kubernetes.io/config.source": "file"}
    cases = [
        (pod(), None),
        (pod(namespace="kube-system"), NotSent.NAMESPACE_EXCLUDED),
        (pod(namespace="kube-node-lease"), NotSent.NAMESPACE_EXCLUDED),
        (pod(mirror), NotSent.MIRROR_POD),
        (pod(mirror, "kube-system"), NotSent.MIRROR_POD),  # never sent, whatever the namespaces
        (pod({"kubernetes.io/config.source": "api"}), None),
    ]
    for document, expected in cases:
        (workload,) = workloads(document)
        assert not_sent_reason(workload, CHART_EXCLUDED_NAMESPACES) is expected, document
    (workload,) = workloads(deployment("web", "quay.io/a/b:1"))
    assert not_sent_reason(workload, CHART_EXCLUDED_NAMESPACES | {"shop"}) is NotSent.NAMESPACE_EXCLUDED


def test_images_of_pods_not_sent_are_exempt_and_have_no_tier() -> None:
    rules = audit_rules()
    (workload,) = workloads(pod(namespace="kube-system"))
    (occurrence,) = occurrences(workload, rules, not_sent=NotSent.NAMESPACE_EXCLUDED)
    assert occurrence.decision == rules.decide("quay.io/a/b:1")  # what it would be, were the pod sent
    assert occurrence.as_dict() == {
        "image": "quay.io/a/b:1",
        "action": "skip",
        "result": "quay.io/a/b:1",
        "reason": "namespace-excluded",
        "tier": None,
        "kind": "Pod",
        "namespace": "kube-system",
        "name": "p",
        "container": "c",
        "source": None,
    }
    report = Report()
    report.add([occurrence])
    (group,) = report.groups.values()
    assert (group.registry, group.tier, group.rewrite, dict(group.skipped)) == (
        "quay.io",
        None,
        0,
        {NotSent.NAMESPACE_EXCLUDED: 1},
    )
    assert dict(report.coverage) == {"exempt": 1}
    assert format_table(report).splitlines()[1].split() == ["quay.io", "-", "1", "1", "0", "namespace-excluded=1"]
