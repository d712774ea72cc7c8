"""AdmissionReviews shaped exactly as the API server sends them, for unit and integration tests."""

from __future__ import annotations

import copy
import uuid
from typing import Any


def make_pod(*images: str, init: tuple[str, ...] = (), annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Pod as the API server holds it on CREATE (defaults filled in, no status)."""
    metadata: dict[str, Any] = {
        "generateName": "web-7d4b9c8f6-",
        "namespace": "apps",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-7d4b9c8f6",
                "uid": "a1b2c3d4-0000-4000-8000-000000000001",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if annotations is not None:
        metadata["annotations"] = annotations

    def container(name: str, image: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [container(f"c{i}", image) for i, image in enumerate(images)],
            "initContainers": [container(f"init{i}", image) for i, image in enumerate(init)],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
        },
    }


def make_review(
    pod: dict[str, Any],
    *,
    operation: str = "CREATE",
    sub_resource: str | None = None,
    old_pod: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """An AdmissionReview request for ``pod`` with everything the API server sets."""
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "name": pod["metadata"].get("name", ""),
        "namespace": pod["metadata"].get("namespace", "apps"),
        "operation": operation,
        "userInfo": {
            "username": "system:serviceaccount:kube-system:replicaset-controller",
            "uid": "b2c3d4e5-0000-4000-8000-000000000002",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
        },
        "object": copy.deepcopy(pod),
        "oldObject": copy.deepcopy(old_pod),
        "dryRun": dry_run,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        if operation == "CREATE"
        else {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    if sub_resource is not None:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}
