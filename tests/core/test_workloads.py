"""Finding pod specs inside Kubernetes objects: every workload kind, Lists, and shapes that are not workloads."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.core.workloads import (
    POD_TEMPLATE_PATHS,
    controller_uid,
    image_keys,
    list_item_kind,
    owned_by_template,
    uid_of,
    workloads,
)

SPEC: dict[str, Any] = {"containers": [{"name": "app", "image": "quay.io/org/app:1"}]}
TEMPLATE: dict[str, Any] = {"metadata": {"annotations": {"a": "b"}}, "spec": SPEC}


def controller(kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": TEMPLATE},
    }


@pytest.mark.parametrize(
    "kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"]
)
def test_controllers_yield_their_template(kind: str) -> None:
    (found,) = workloads(controller(kind))
    assert (found.kind, found.namespace, found.name) == (kind, "shop", "web")
    assert found.spec_path == ("spec", "template", "spec")
    assert found.spec == SPEC
    assert found.pod_metadata == {"annotations": {"a": "b"}}


def test_a_pod_is_its_own_spec_and_metadata() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p", "annotations": {"x": "y"}}, "spec": SPEC}
    (found,) = workloads(pod)
    assert (found.kind, found.namespace, found.name, found.spec_path) == ("Pod", None, "p", ("spec",))
    assert found.pod_metadata == pod["metadata"]


def test_cronjob_template_is_under_the_job_template() -> None:
    cronjob = {
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}},
    }
    (found,) = workloads(cronjob)
    assert found.spec_path == ("spec", "jobTemplate", "spec", "template", "spec")


def test_pod_template_kind() -> None:
    (found,) = workloads({"kind": "PodTemplate", "metadata": {"name": "t"}, "template": TEMPLATE})
    assert found.spec_path == ("template", "spec")


def test_every_kind_the_issue_names_is_known() -> None:
    kinds = "Pod Deployment StatefulSet DaemonSet ReplicaSet Job CronJob ReplicationController PodTemplate"
    assert set(POD_TEMPLATE_PATHS) == set(kinds.split())


def test_kubectl_list_items_carry_their_paths() -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [controller("Deployment"), {"kind": "Service"}, controller("DaemonSet")],
    }
    found = list(workloads(listed))
    assert [(item.kind, item.spec_path) for item in found] == [
        ("Deployment", ("items", 0, "spec", "template", "spec")),
        ("DaemonSet", ("items", 2, "spec", "template", "spec")),
    ]


def test_typed_list_items_without_kind_take_it_from_the_list() -> None:
    # The API server's PodList items have no `kind`; kubectl adds it, the raw API does not.
    pods = {"kind": "PodList", "items": [{"metadata": {"name": "a"}, "spec": SPEC}]}
    (found,) = workloads(pods)
    assert (found.kind, found.name, found.spec_path) == ("Pod", "a", ("items", 0, "spec"))


def test_a_streamed_item_keeps_its_place_in_the_document() -> None:
    (found,) = workloads({"metadata": {"name": "a"}, "spec": SPEC}, ("items", 7), "Pod")
    assert found.spec_path == ("items", 7, "spec")


@pytest.mark.parametrize(
    "document",
    [
        None,
        "text",
        [],
        {"kind": "ConfigMap", "data": {"image": "nginx"}},
        {"kind": "Deployment"},
        {"kind": "Deployment", "spec": {"template": "nope"}},
        {"kind": "Deployment", "spec": {"template": {"spec": []}}},
        {"kind": 3, "spec": SPEC},
        {"spec": SPEC},
        {"kind": "List", "items": "nope"},
    ],
)
def test_other_shapes_are_passed_over(document: object) -> None:
    assert list(workloads(document)) == []


def test_odd_metadata_does_not_stop_the_spec() -> None:
    (found,) = workloads({"kind": "Pod", "metadata": {"name": 5, "namespace": []}, "spec": SPEC})
    assert (found.name, found.namespace) == ("", None)
    (found,) = workloads({"kind": "Deployment", "metadata": "x", "spec": {"template": {"metadata": 1, "spec": SPEC}}})
    assert (found.name, found.pod_metadata) == ("", None)


def owned(kind: str, *, controller: bool = True) -> dict[str, Any]:
    return {"metadata": {"ownerReferences": [{"kind": kind, "name": "x", "controller": controller}]}}


@pytest.mark.parametrize(
    ("document", "kind", "expected"),
    [
        (owned("ReplicaSet"), "Pod", True),
        (owned("Job"), "Pod", True),
        (owned("StatefulSet"), "Pod", True),
        (owned("Node"), "Pod", False),  # static pods: no template anywhere
        (owned("SparkApplication"), "Pod", False),  # an operator's pods: report them
        (owned("ReplicaSet", controller=False), "Pod", False),
        (owned("Deployment"), "ReplicaSet", True),
        (owned("Rollout"), "ReplicaSet", False),
        (owned("CronJob"), "Job", True),
        (owned("Deployment"), "Deployment", False),
        ({"metadata": {}}, "Pod", False),
        ({"metadata": {"ownerReferences": "x"}}, "Pod", False),
        ("x", "Pod", False),
    ],
)
def test_owned_by_template(document: object, kind: str, expected: bool) -> None:
    assert owned_by_template(document, kind) is expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("PodList", "Pod"), ("DeploymentList", "Deployment"), ("List", None), ("Pod", None), (None, None)],
)
def test_list_item_kind(kind: str | None, expected: str | None) -> None:
    assert list_item_kind(kind) == expected


def test_a_pod_beyond_its_template_keeps_only_what_the_template_lacks() -> None:
    (template,) = workloads(controller("ReplicaSet"))
    pod = {
        "kind": "Pod",
        "metadata": {"name": "web-1"},
        "spec": {
            "initContainers": [{"name": "istio-init", "image": "docker.io/istio/proxyv2:1"}],
            "containers": [*SPEC["containers"], {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1"}],
            "ephemeralContainers": [{"name": "debugger", "image": "busybox:1"}],
            "volumes": [{"name": "models", "image": {"reference": "quay.io/m/m:1"}}, {"name": "tmp", "emptyDir": {}}],
        },
    }
    (found,) = workloads(pod)
    assert image_keys(template) == {"app"}
    beyond = found.beyond(image_keys(template))
    assert beyond is not None
    assert [slot.key for slot in beyond.image_slots()] == ["istio-init", "istio-proxy", "debugger", "volumes/models"]
    assert [slot.index for slot in beyond.image_slots()] == [0, 1, 0, 0]  # still where they sit in the spec
    assert found.beyond(image_keys(found)) is None


def test_uids_of_an_object_and_its_controller() -> None:
    document = {
        "metadata": {
            "uid": "u-pod",
            "ownerReferences": [
                {"kind": "Node", "uid": "u-node"},
                {"kind": "ReplicaSet", "uid": "u-rs", "controller": True},
            ],
        }
    }
    assert (uid_of(document), controller_uid(document)) == ("u-pod", "u-rs")
    assert (uid_of({}), controller_uid({"metadata": {"ownerReferences": [{"controller": True}]}})) == (None, None)
