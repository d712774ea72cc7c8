"""A live cluster, read only: the pods and pod templates its API server lists, page by page.

The edge to the official ``kubernetes`` client. Only ``list`` calls are made (HTTP GET); nothing is created,
changed or watched, and a refreshed kubeconfig token is not written back. What is reported, so nothing counts twice:
every controller's pod template (what will be created), and every Pod, ReplicaSet or Job that no listed controller
owns (a bare pod, a static pod, a pod of an operator's custom resource); a Deployment's ReplicaSets and pods, a
CronJob's Jobs and their pods are covered by the Deployment's or CronJob's template. A controller's pod still
reports the images its template does not have (injected sidecars, ``kubectl debug`` containers): pods are listed
last, once every template they could come from is known.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import urllib3
from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, load_incluster_config, load_kube_config

from webhook.core.workloads import (
    TEMPLATE_OWNERS,
    controller_uid,
    image_keys,
    owned_by_template,
    uid_of,
    workloads,
)
from webhook.exceptions import WebhookError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from webhook.core.workloads import Workload

PAGE_SIZE: Final = 500
"""Objects per list call; the API server hands out a ``continue`` token for the next page."""
DEFAULT_KUBECONFIG: Final = "~/.kube/config"
POD_CONTROLLERS: Final = TEMPLATE_OWNERS["Pod"]


class ClusterError(WebhookError):
    """The cluster cannot be reached or read; the message names the resource and the fix."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind the audit lists, and how (all namespaces or one)."""

    kind: str
    plural: str
    list_all: Callable[..., Any]
    list_namespaced: Callable[..., Any]

    def lister(self, namespace: str | None) -> Callable[..., Any]:
        """The list call for all namespaces, or for ``namespace``."""
        if namespace is None:
            return self.list_all
        return functools.partial(self.list_namespaced, namespace)


def connect(context: str | None = None, kubeconfig: str | None = None) -> ApiClient:
    """A client for the kubeconfig (``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config``), else the pod's account.

    A kubeconfig named explicitly (flag or variable) must exist: falling back to the pod's service account would
    audit another cluster than the one meant (in a CI pod, the CI's own).
    """
    configuration = Configuration()
    named = kubeconfig or os.environ.get("KUBECONFIG")
    config_file = named or DEFAULT_KUBECONFIG
    has_kubeconfig = any(Path(part).expanduser().is_file() for part in config_file.split(os.pathsep) if part)
    if named and not has_kubeconfig:
        option = "--kubeconfig" if kubeconfig else "KUBECONFIG"
        raise ClusterError(
            f"{option} {named}: no such kubeconfig file; fix the path, or unset it to use {DEFAULT_KUBECONFIG} or "
            "the pod's service account"
        )
    try:
        if has_kubeconfig or context is not None:
            load_kube_config(
                config_file=config_file, context=context, client_configuration=configuration, persist_config=False
            )
        else:
            load_incluster_config(client_configuration=configuration)
    except ConfigException as error:
        raise ClusterError(
            f"no cluster to read ({error}); set KUBECONFIG or --kubeconfig, pass --context, or run in a pod"
        ) from None
    return ApiClient(configuration)


def resources(client: ApiClient) -> tuple[Resource, ...]:
    """The kinds that hold pod specs, with their list calls; pods last (see :func:`read_cluster`)."""
    core, apps, batch = CoreV1Api(client), AppsV1Api(client), BatchV1Api(client)
    return (
        Resource(
            "ReplicationController",
            "replicationcontrollers",
            core.list_replication_controller_for_all_namespaces,
            core.list_namespaced_replication_controller,
        ),
        Resource(
            "PodTemplate", "podtemplates", core.list_pod_template_for_all_namespaces, core.list_namespaced_pod_template
        ),
        Resource(
            "Deployment", "deployments.apps", apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment
        ),
        Resource(
            "StatefulSet",
            "statefulsets.apps",
            apps.list_stateful_set_for_all_namespaces,
            apps.list_namespaced_stateful_set,
        ),
        Resource(
            "DaemonSet", "daemonsets.apps", apps.list_daemon_set_for_all_namespaces, apps.list_namespaced_daemon_set
        ),
        Resource(
            "ReplicaSet", "replicasets.apps", apps.list_replica_set_for_all_namespaces, apps.list_namespaced_replica_set
        ),
        Resource("Job", "jobs.batch", batch.list_job_for_all_namespaces, batch.list_namespaced_job),
        Resource("CronJob", "cronjobs.batch", batch.list_cron_job_for_all_namespaces, batch.list_namespaced_cron_job),
        Resource("Pod", "pods", core.list_pod_for_all_namespaces, core.list_namespaced_pod),
    )


def read_service_accounts(client: ApiClient, namespace: str | None = None, page_size: int = PAGE_SIZE) -> Iterator[Any]:
    """Every ServiceAccount (raw JSON), for the ``imagePullSecrets`` the API server gives the pods that run as one."""
    core = CoreV1Api(client)
    resource = Resource(
        "ServiceAccount",
        "serviceaccounts",
        core.list_service_account_for_all_namespaces,
        core.list_namespaced_service_account,
    )
    for item in _list(resource, namespace, page_size):
        if isinstance(item, dict):
            yield item


def read_cluster(client: ApiClient, namespace: str | None = None, page_size: int = PAGE_SIZE) -> Iterator[Workload]:
    """Every pod spec to report (see the module docstring), listed page by page; raises :class:`ClusterError`."""
    templates: dict[str, frozenset[str]] = {}  # uid of a pod's possible controller -> its template's image keys
    for resource in resources(client):
        for item in _list(resource, namespace, page_size):
            uid = uid_of(item) if resource.kind in POD_CONTROLLERS else None
            for workload in workloads(item, (), resource.kind):
                if uid is not None:
                    templates[uid] = image_keys(workload)
                if not owned_by_template(item, resource.kind):
                    yield workload
                elif resource.kind == "Pod":
                    # A controller's pod: only what its template lacks; all of it if that template was not listed
                    # (created between two list calls).
                    template = templates.get(controller_uid(item) or "")
                    beyond = workload.beyond(template) if template is not None else workload
                    if beyond is not None:
                        yield beyond


def _list(resource: Resource, namespace: str | None, page_size: int) -> Iterator[object]:
    """The items of one kind, following ``metadata.continue`` from page to page; raw JSON, as manifests read."""
    lister = resource.lister(namespace)
    scope = f"in namespace {namespace}" if namespace else "in all namespaces"
    token: str | None = None
    while True:
        try:
            response = lister(limit=page_size, _continue=token, _preload_content=False)
            page = json.loads(response.data)
        except ApiException as error:
            raise ClusterError(
                f"cannot list {resource.plural} {scope}: {error.status} {error.reason}; "
                f"audit needs `list` on {resource.plural} (or pass --namespace)"
            ) from None
        except urllib3.exceptions.HTTPError as error:
            raise ClusterError(f"cannot reach the API server to list {resource.plural}: {error}") from None
        except ValueError:
            raise ClusterError(f"the API server's list of {resource.plural} is not JSON") from None
        items = page.get("items") if isinstance(page, dict) else None
        yield from items if isinstance(items, list) else ()
        metadata = page.get("metadata") if isinstance(page, dict) else None
        token = metadata.get("continue") if isinstance(metadata, dict) else None
        if not token:
            return
