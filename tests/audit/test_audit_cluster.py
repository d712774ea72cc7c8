"""``audit --cluster`` through the official kubernetes client against a recorded API on 127.0.0.1.

No API server runs here, so a stdlib HTTP server answers with REST responses in the API server's wire shape
(``fixtures/api/recorded.json``: ``PodList``-style pages whose items carry no ``kind``, ``metadata.continue``
tokens). The tests check what the client asks (GET list calls only, each page followed) and what audit reports.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from audit.audit_support import FIXTURES, REGISTRY, Cli, cli_fixture, write_config

from webhook.audit import cluster
from webhook.audit.cluster import ClusterError, Resource, connect, read_cluster

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RECORDED: dict[str, list[dict[str, Any]]] = json.loads((FIXTURES / "api" / "recorded.json").read_text(encoding="utf-8"))
TOKEN = "recorded-token"  # noqa: S105 - the fake API server's, checked on every request

cli = cli_fixture()


@dataclass
class RecordedApi:
    """What the fake API server saw, and what it refuses."""

    url: str = ""
    requests: list[tuple[str, str, dict[str, list[str]], str | None]] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)
    garbled: set[str] = field(default_factory=set)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        namespace = None
        parts = path.split("/")
        if "namespaces" in parts:  # /api/v1/namespaces/NS/pods -> the cluster-wide pages, filtered
            index = parts.index("namespaces")
            namespace = parts[index + 1]
            path = "/".join(parts[:index] + parts[index + 2 :])
        if path in self.forbidden:
            return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
        pages = RECORDED.get(path)
        if pages is None:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
        token = query.get("continue", [""])[0]
        tokens = [""] + [page["metadata"].get("continue", "") for page in pages[:-1]]
        page = dict(pages[tokens.index(token)])
        if namespace is not None:
            page["items"] = [item for item in page["items"] if item["metadata"]["namespace"] == namespace]
        return 200, page


@pytest.fixture
def api() -> Iterator[RecordedApi]:
    recorded = RecordedApi()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> tuple[str, dict[str, list[str]]]:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            recorded.requests.append((self.command, url.path, query, self.headers.get("Authorization")))
            return url.path, query

        def do_GET(self) -> None:
            path, query = self._record()
            status, body = recorded.answer(path, query)
            data = b"<html>proxy error</html>" if path in recorded.garbled else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self) -> None:
            self._record()
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # noqa: N815 - http.server's method names

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    recorded.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorded
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def kubeconfig(tmp_path: Path, api: RecordedApi) -> Path:
    """Two contexts: the current one points at a closed port, `recorded` at the recorded API."""
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "recorded", "cluster": {"server": api.url}},
            {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}},
        ],
        "users": [{"name": "auditor", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "recorded", "context": {"cluster": "recorded", "user": "auditor"}},
            {"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "auditor"}},
        ],
        "current-context": "elsewhere",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def audit(cli: Cli, kubeconfig: Path, *flags: str) -> tuple[int, str, str]:
    config = write_config(kubeconfig.parent)
    return cli(
        "audit",
        "--config",
        str(config),
        "--cluster",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "recorded",
        *flags,
    )


@pytest.mark.integration
def test_cluster_audit_reports_each_workload_once(cli: Cli, kubeconfig: Path) -> None:
    code, out, err = audit(cli, kubeconfig, "--output", "json")
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    reported = sorted({(line["kind"], line["namespace"], line["name"]) for line in lines})
    assert reported == [
        ("CronJob", "shop", "nightly"),
        ("DaemonSet", "kube-system", "kube-proxy"),
        ("Deployment", "ecr-ptc-webhook", "ecr-ptc-webhook"),
        ("Deployment", "shop", "web"),
        ("Pod", "data", "spark-driver"),  # owned by an operator's custom resource: no template we list
        ("Pod", "kube-system", "etcd-node-1"),  # a static pod, on page 2: the continue token was followed
        ("Pod", "shop", "debug"),  # a bare pod
        ("Pod", "shop", "nightly-28800000-q9z8w"),  # a sidecar its template does not have (below)
        ("Pod", "shop", "web-7d4b9c-abcde"),
        ("ReplicaSet", "shop", "legacy-5f6d"),  # no Deployment owns it
        ("StatefulSet", "shop", "db"),
    ]
    by_name = {(line["name"], line["container"]): line for line in lines}
    assert by_name["web", "c0"]["action"] == "rewrite"
    assert by_name["db", "c0"]["reason"] == "pod-opted-out"
    assert all(line["source"] is None for line in lines)


@pytest.mark.integration
def test_service_accounts_pull_secrets_are_read_from_the_cluster(
    cli: Cli, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API server gives a pod its ServiceAccount's imagePullSecrets at admission; a Deployment's template does not
    # show them, so audit lists the ServiceAccounts. Here shop/default gains one.
    (page,) = RECORDED["/api/v1/serviceaccounts"]
    items = [dict(item) for item in page["items"]]
    for item in items:
        if item["metadata"]["namespace"] == "shop" and item["metadata"]["name"] == "default":
            item["imagePullSecrets"] = [{"name": "quay-robot"}]
    monkeypatch.setitem(RECORDED, "/api/v1/serviceaccounts", [{**page, "items": items}])
    code, out, err = audit(cli, kubeconfig, "--output", "json")
    assert (code, err) == (0, "")
    by_name = {(line["name"], line["container"]): line for line in map(json.loads, out.splitlines())}
    assert by_name["web", "c0"]["image"] == "quay.io/shop/web:2.1"
    assert by_name["web", "c0"]["reason"] == "pull-secret"
    kept = {(line["namespace"], line["image"]) for line in by_name.values() if line["reason"] == "pull-secret"}
    assert kept
    assert {namespace for namespace, _ in kept} == {"shop"}
    assert all(image.startswith("quay.io/") for _, image in kept)  # registry.k8s.io holds no private images
    assert {line["reason"] for (name, _), line in by_name.items() if name == "db"} == {"pod-opted-out"}


@pytest.mark.integration
def test_a_forbidden_service_account_list_is_one_clear_line(cli: Cli, api: RecordedApi, kubeconfig: Path) -> None:
    api.forbidden.add("/api/v1/serviceaccounts")
    code, out, err = audit(cli, kubeconfig)
    assert (code, out) == (2, "")
    assert "cannot list serviceaccounts in all namespaces: 403 Forbidden; audit needs `list` on serviceaccounts" in err


@pytest.mark.integration
def test_a_controllers_pod_reports_only_what_its_template_lacks(cli: Cli, kubeconfig: Path) -> None:
    # Sidecars other webhooks inject and `kubectl debug` containers run only in the pod; this webhook rewrites them.
    code, out, _ = audit(cli, kubeconfig, "--output", "json")
    assert code == 0
    pods = sorted(
        (line["name"], line["container"], line["image"], line["reason"])
        for line in map(json.loads, out.splitlines())
        if line["kind"] == "Pod" and line["name"].startswith(("web-", "nightly-", "kube-proxy-"))
    )
    assert pods == [
        ("nightly-28800000-q9z8w", "vault-agent-init", "hashicorp/vault:1.17.2", "tier-disabled"),
        ("web-7d4b9c-abcde", "debugger-7xk2q", "ghcr.io/nicolaka/netshoot:v0.13", "tier-disabled"),
        ("web-7d4b9c-abcde", "istio-init", "docker.io/istio/proxyv2:1.23.0", "tier-disabled"),
        ("web-7d4b9c-abcde", "istio-proxy", "docker.io/istio/proxyv2:1.23.0", "tier-disabled"),
    ]


@pytest.mark.integration
def test_pods_the_webhook_is_never_sent_are_reported_so(cli: Cli, kubeconfig: Path) -> None:
    # The chart's namespaceSelector leaves out kube-system, kube-node-lease and its release namespace; its
    # matchConditions skip mirror pods. The webhook decides nothing for them, so neither does the audit.
    code, out, _ = audit(cli, kubeconfig, "--output", "json")
    assert code == 0
    reasons = {(line["name"], line["container"]): line for line in map(json.loads, out.splitlines())}
    assert reasons["etcd-node-1", "c0"] | {"image": ""} == {
        "image": "",
        "action": "skip",
        "result": "registry.k8s.io/etcd:3.5.15-0",
        "reason": "mirror-pod",
        "tier": None,
        "kind": "Pod",
        "namespace": "kube-system",
        "name": "etcd-node-1",
        "container": "c0",
        "source": None,
    }
    assert reasons["kube-proxy", "c0"]["reason"] == "namespace-excluded"
    assert reasons["ecr-ptc-webhook", "webhook"]["reason"] == "tier-disabled"  # the release namespace: not given

    code, out, _ = audit(cli, kubeconfig, "--output", "json", "--exclude-namespace", "ecr-ptc-webhook")
    assert code == 0
    reasons = {(line["name"], line["container"]): line for line in map(json.loads, out.splitlines())}
    assert reasons["ecr-ptc-webhook", "webhook"]["reason"] == "namespace-excluded"
    assert reasons["kube-proxy", "c0"]["reason"] == "namespace-excluded"  # still: the chart always excludes it
    assert reasons["etcd-node-1", "c0"]["reason"] == "mirror-pod"


@pytest.mark.integration
def test_pods_not_sent_are_exempt_and_need_no_tier(cli: Cli, kubeconfig: Path) -> None:
    code, out, err = audit(cli, kubeconfig, "--exclude-namespace", "ecr-ptc-webhook", "--fail-on", "uncovered")
    assert code == 1
    assert "11 pod specs, 14 image occurrences (13 distinct images): 3 covered, 4 exempt" in out
    assert "kube-system" not in out
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()[1:] if line}
    assert rows["registry.k8s.io", "-"] == ["1", "1", "0", "mirror-pod=1"]
    assert rows["602401143452.dkr.ecr.us-west-2.amazonaws.com", "-"] == ["1", "1", "0", "namespace-excluded=1"]
    assert err == "ecr-ptc-webhook audit: 7 image occurrences are uncovered (--fail-on)\n"


@pytest.mark.integration
def test_only_paginated_get_list_calls_are_made(cli: Cli, api: RecordedApi, kubeconfig: Path) -> None:
    assert audit(cli, kubeconfig)[0] == 0
    assert {method for method, *_ in api.requests} == {"GET"}
    assert {auth for *_, auth in api.requests} == {f"Bearer {TOKEN}"}
    assert all(query["limit"] == ["500"] for _, _, query, _ in api.requests)
    pods = [query.get("continue") for _, path, query, _ in api.requests if path == "/api/v1/pods"]
    assert pods == [None, [RECORDED["/api/v1/pods"][0]["metadata"]["continue"]]]
    assert sorted(path for _, path, _, _ in api.requests) == sorted([*RECORDED, "/api/v1/pods"])


@pytest.mark.integration
def test_table_from_the_cluster(cli: Cli, kubeconfig: Path) -> None:
    code, out, _ = audit(cli, kubeconfig, "--fail-on", "tier-disabled")
    assert code == 1  # ghcr and docker-hub images would need their tiers
    assert "11 pod specs, 14 image occurrences" in out
    assert (
        "Enable tier ghcr (opt-in: needs a Secrets Manager credential) to cover 4 more occurrences "
        "(images: 4, pod specs: 4)." in out
    )
    assert (
        "Enable tier docker-hub (opt-in: needs a Secrets Manager credential) to cover 4 more occurrences "
        "(images: 3, pod specs: 3)." in out  # istio-init and istio-proxy: one pod
    )


@pytest.mark.integration
def test_one_namespace(cli: Cli, api: RecordedApi, kubeconfig: Path) -> None:
    code, out, _ = audit(cli, kubeconfig, "--namespace", "kube-system", "--output", "json")
    assert code == 0
    assert {json.loads(line)["name"] for line in out.splitlines()} == {"kube-proxy", "etcd-node-1"}
    assert all(path.startswith(("/api/v1/namespaces/kube-system/", "/apis/")) for _, path, _, _ in api.requests)
    assert all("/namespaces/kube-system/" in path for _, path, _, _ in api.requests)


@pytest.mark.integration
def test_a_forbidden_list_is_one_clear_line(cli: Cli, api: RecordedApi, kubeconfig: Path) -> None:
    api.forbidden.add("/apis/batch/v1/cronjobs")
    code, out, err = audit(cli, kubeconfig, "--output", "json")
    assert (code, out) == (2, "")
    assert err == (
        "ecr-ptc-webhook audit: cannot list cronjobs.batch in all namespaces: 403 Forbidden; "
        "audit needs `list` on cronjobs.batch (or pass --namespace)\n"
    )


def test_no_kubeconfig_and_not_in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match=r"^no cluster to read \(.*\); set KUBECONFIG or --kubeconfig"):
        connect()


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """As in a CI pod: a service account to fall back on, and no ~/.kube/config; records each fallback."""
    used: list[str] = []
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(cluster, "load_incluster_config", lambda **_: used.append("in-cluster"))
    return used


def test_in_a_pod_without_a_kubeconfig_the_service_account_is_used(in_a_pod: list[str]) -> None:
    connect().close()
    assert in_a_pod == ["in-cluster"]


def test_a_kubeconfig_flag_that_names_no_file_is_an_error(in_a_pod: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ClusterError, match=rf"^--kubeconfig {missing}: no such kubeconfig file; fix the path"):
        connect(kubeconfig=str(missing))
    assert in_a_pod == []  # not another cluster than the one named


def test_a_kubeconfig_variable_that_names_no_file_is_an_error(
    in_a_pod: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "typo"))
    with pytest.raises(ClusterError, match=rf"^KUBECONFIG {tmp_path / 'typo'}: no such kubeconfig file"):
        connect()
    assert in_a_pod == []


def test_an_unknown_context_is_named(kubeconfig: Path) -> None:
    with pytest.raises(ClusterError, match="nope"):
        connect("nope", str(kubeconfig))


@pytest.mark.integration
def test_a_response_that_is_not_json_is_one_clear_line(cli: Cli, api: RecordedApi, kubeconfig: Path) -> None:
    api.garbled.add("/apis/apps/v1/daemonsets")
    code, _, err = audit(cli, kubeconfig)
    assert code == 2
    assert err == "ecr-ptc-webhook audit: the API server's list of daemonsets.apps is not JSON\n"


@pytest.mark.integration
def test_an_unreachable_api_server_is_one_clear_line(cli: Cli, kubeconfig: Path) -> None:
    config = write_config(kubeconfig.parent)
    code, _, err = cli("audit", "--config", str(config), "--cluster", "--kubeconfig", str(kubeconfig))  # elsewhere
    assert code == 2
    assert err.startswith("ecr-ptc-webhook audit: cannot reach the API server to list serviceaccounts: ")


def test_without_the_kubernetes_client_cluster_says_what_to_install(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "webhook.audit.cluster", raising=False)
    for name in [name for name in sys.modules if name.partition(".")[0] == "kubernetes"]:
        monkeypatch.setitem(sys.modules, name, None)  # what `import kubernetes...` sees when it is not installed
    code, _, err = cli("audit", "--registry", REGISTRY, "--cluster")
    assert code == 2
    assert (
        err == "ecr-ptc-webhook audit: --cluster needs the kubernetes client: pip install 'ecr-ptc-webhook[cluster]'\n"
    )


def fake_resources(listed: dict[str, list[dict[str, Any]]]) -> tuple[Resource, ...]:
    def lister(kind: str) -> Any:
        def list_all(**_: object) -> Any:
            return SimpleNamespace(data=json.dumps({"items": listed.get(kind, []), "metadata": {}}))

        return list_all

    kinds = ("ReplicaSet", "Pod")
    return tuple(Resource(kind, kind.lower(), lister(kind), lister(kind)) for kind in kinds)


def pod(name: str, owner_uid: str, *containers: str, ephemeral: str = "", volume: str = "") -> dict[str, Any]:
    owner = {"kind": "ReplicaSet", "name": "rs", "uid": owner_uid, "controller": True}
    spec: dict[str, Any] = {"containers": [{"name": item, "image": f"quay.io/a/{item}:1"} for item in containers]}
    if ephemeral:
        spec["ephemeralContainers"] = [{"name": ephemeral, "image": f"quay.io/a/{ephemeral}:1"}]
    if volume:
        spec["volumes"] = [{"name": volume, "image": {"reference": f"quay.io/a/{volume}:1"}}, {"name": "tmp"}]
    return {"metadata": {"name": name, "namespace": "shop", "ownerReferences": [owner]}, "spec": spec}


def test_a_controllers_pod_beyond_its_template(monkeypatch: pytest.MonkeyPatch) -> None:
    template = {"spec": pod("rs", "", "app", volume="models")["spec"]}
    replica_set = {"metadata": {"name": "rs", "namespace": "shop", "uid": "rs-1"}, "spec": {"template": template}}
    listed = {
        "ReplicaSet": [replica_set],
        "Pod": [
            pod("same", "rs-1", "app", volume="models"),  # nothing beyond its template: not reported
            pod("more", "rs-1", "app", "sidecar", ephemeral="debugger", volume="injected"),
            pod("unlisted", "rs-2", "app"),  # its ReplicaSet was created after the list: all of it is reported
        ],
    }
    monkeypatch.setattr(cluster, "resources", lambda _client: fake_resources(listed))
    found = [(item.kind, item.name, [slot.key for slot in item.image_slots()]) for item in read_cluster(object())]
    assert found == [
        ("ReplicaSet", "rs", ["app", "volumes/models"]),
        ("Pod", "more", ["sidecar", "debugger", "volumes/injected"]),
        ("Pod", "unlisted", ["app"]),
    ]
