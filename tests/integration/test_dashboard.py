"""The Grafana dashboard the chart ships (hack/dashboard.py writes it).

What a user turning on `metrics.grafanaDashboard.enabled` relies on: a dashboard Grafana loads (valid JSON, unique
panel ids, a grid without overlaps, every query on the data source variable), whose every query names metrics and
labels the running webhook really exports, in a ConfigMap the sidecar finds, holding exactly the committed file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Final

import pytest
import yaml
from aws_sandbox import isolate_aws
from cache.cache_support import FakeEcrApi, free_port
from integration.server import WebhookProcess
from prometheus_client.parser import text_string_to_metric_families
from repository import REPO, tool
from reviews import make_pod, make_review

from webhook.cache.registry_client import ENV_PASSWORD, ENV_USERNAME
from webhook.certs import generate_ca, generate_serving, key_pem

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CHART: Final = REPO / "charts" / "ecr-ptc-webhook"
DASHBOARD: Final = CHART / "dashboards" / "ecr-ptc-webhook.json"
RELEASE: Final = "ecr-ptc-webhook"
NAMESPACE: Final = "ecr-ptc-webhook"
REGISTRY: Final = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VARIABLES: Final = {"__rate_interval", "__range", "__interval"}
TARGET_LABELS: Final = {"namespace", "job", "pod", "instance"}
"""Labels Prometheus adds to every series it scrapes through the chart's ServiceMonitor."""
NOT_ON_DASHBOARD: Final[dict[str, str]] = {}
"""Metric families the webhook exports that no panel shows, each with the reason."""

Json = dict[str, Any]


def load() -> Json:
    dashboard: Json = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def panels(dashboard: Json) -> list[Json]:
    """Every panel but rows (rows hold no query)."""
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def exprs(dashboard: Json) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]


def variable_queries(dashboard: Json) -> dict[str, str]:
    return {v["name"]: v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"}


# --- PromQL, read just enough to name its metrics and labels -----------------------------------------------------

_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS: Final = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL: Final = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"\"")
_RANGE: Final = re.compile(r"\[[^\]]*\]")
_GROUPING: Final = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_NAME: Final = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*(?![\w:]|\s*\()")
_KEYWORDS: Final = (
    {"and", "or", "unless", "bool", "offset", "inf", "nan"}
    | {"by", "without", "on", "ignoring"}
    | {
        "group_left",
        "group_right",
    }
)
_LABEL_VALUES: Final = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names (matchers and groupings) a PromQL expression uses."""
    text = _STRING.sub('""', expr)
    labels = {label for body in _MATCHERS.findall(text) for label in _MATCHER_LABEL.findall(body)}
    labels |= {label.strip() for group in _GROUPING.findall(text) for label in group.split(",") if label.strip()}
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", text)))
    metrics = {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}
    return metrics, labels


def variable_names(query: str) -> tuple[set[str], set[str]]:
    """The metric and label names of a variable's ``label_values(selector, label)``."""
    match = _LABEL_VALUES.fullmatch(query)
    assert match, f"variable query {query!r}: expected label_values(selector, label)"
    metrics, labels = promql_names(match["selector"])
    return metrics, {*labels, match["label"]}


def test_promql_names_reads_metrics_and_labels_not_functions_or_variables() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, path) (rate(a_bucket{namespace=~"$namespace", x!="by (y)"}'
        '[$__rate_interval]))) / on (pod) group_left b_total offset 5m and time() - c{job="x"} > 1e3'
    )
    assert promql_names(expr) == ({"a_bucket", "b_total", "c"}, {"le", "path", "namespace", "x", "pod", "job"})
    assert variable_names('label_values(info{namespace=~"$namespace"}, job)') == ({"info"}, {"namespace", "job"})


# --- the JSON ----------------------------------------------------------------------------------------------------


def test_the_committed_dashboard_is_what_hack_dashboard_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "dashboard.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = load()
    assert dashboard["uid"] == "ecr-ptc-webhook"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36  # datasource references as {type, uid} objects
    assert dashboard["id"] is None  # provisioned: Grafana assigns it
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert all(isinstance(panel_id, int) for panel_id in ids)
    assert len(ids) == len(set(ids))
    occupied: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}, panel["title"]
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] >= 0
        assert grid["y"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']!r} overlaps {occupied[x, y]!r}"
                occupied[x, y] = panel["title"]


def test_every_panel_queries_the_data_source_variable() -> None:
    dashboard = load()
    (source,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert source["type"] == "datasource"
    assert source["query"] == "prometheus"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    assert [panel for panel in dashboard["panels"] if panel["type"] == "row" and panel.get("targets")] == []
    for panel in panels(dashboard):
        assert panel["title"]
        assert panel["description"], panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_queries_use_only_defined_variables_and_every_query_is_narrowed_by_them() -> None:
    dashboard = load()
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "job", "pod"} <= defined
    for expr in exprs(dashboard) + list(variable_queries(dashboard).values()):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= defined | GRAFANA_VARIABLES, expr
    for expr in exprs(dashboard):
        # Every series read is limited to the chosen webhook: no panel mixes in another install.
        for body in _MATCHERS.findall(expr):
            assert 'namespace=~"$namespace", job=~"$job", pod=~"$pod"' in body, expr


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    promtool = subprocess.run(["sh", "-c", "command -v promtool"], capture_output=True, text=True, check=False)
    if promtool.returncode != 0:
        pytest.skip("promtool is not installed; the queries' names are still checked against a real scrape")
    queries = exprs(load())
    rules = [
        {"record": f"dashboard_query_{index}", "expr": expr.replace("$__rate_interval", "1m").replace("$__range", "1h")}
        for index, expr in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool.stdout.strip(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


# --- the names against a scrape of the real webhook ----------------------------------------------------------------


def scrape(server: WebhookProcess) -> dict[str, dict[str, set[str]]]:
    """Metric family -> its sample names -> their label names, from the webhook's /metrics over TLS."""
    status, body = server.request("GET", "/metrics")
    assert status == 200
    exported: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        samples = exported.setdefault(family.name, {})
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return exported


def wait_for(server: WebhookProcess, sample: str, what: str, deadline: float = 15.0) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if any(sample in samples for samples in scrape(server).values()):
            return
        time.sleep(0.1)
    pytest.fail(f"no {sample} on /metrics after {deadline}s ({what}):\n{server.logs()}")


@pytest.fixture
def webhook_with_every_feature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookProcess]:
    """`rules: discover` against an ECR API on loopback (quay as expected, k8s drifted) and `verify: true` against a
    registry port nothing listens on, so every collector has series."""
    isolate_aws(monkeypatch, tmp_path, "eu-west-1")
    monkeypatch.setenv(ENV_USERNAME, "ecr")
    monkeypatch.setenv(ENV_PASSWORD, "token")
    rules = [
        {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"},
        {"ecrRepositoryPrefix": "k8s", "upstreamRegistryUrl": "mirror.example.com", "upstreamRegistry": "k8s"},
    ]
    config = tmp_path / "config.yaml"
    settings = {
        "registry": f"127.0.0.1:{free_port()}",
        "tiers": ["quay", "k8s"],
        "rules": "discover",
        "rulesRefreshSeconds": 0.5,
        "verify": True,
        "verifyBudgetSeconds": 0.3,
    }
    config.write_text(json.dumps(settings))
    with FakeEcrApi(rules) as ecr:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", ecr.url)
        with WebhookProcess(tmp_path, config) as server:
            yield server


@pytest.mark.integration
def test_every_query_names_metrics_and_labels_the_running_webhook_exports(
    webhook_with_every_feature: WebhookProcess,
) -> None:
    server = webhook_with_every_feature
    wait_for(server, "ecr_ptc_webhook_rules_drift", "the first read of the cache's rules")
    # A rewrite the verifier cannot confirm (vetoed), a dry-run skip, a bad request, a key that does not match the
    # certificate (a failed reload; the old pair keeps serving).
    status, _ = server.request("POST", "/mutate?timeout=3s", make_review(make_pod("quay.io/org/app:1.0")))
    assert status == 200
    status, _ = server.request("POST", "/audit", make_review(make_pod("gcr.io/org/app:1.0")))
    assert status == 200
    assert server.request("POST", "/mutate", "not a review")[0] == 400
    _, wrong_key = generate_serving(*generate_ca(), ["localhost"])
    (server.cert_dir / "tls.key").write_bytes(key_pem(wrong_key))
    wait_for(server, "ecr_ptc_webhook_certificate_reloads_total", "the failed certificate reload")

    by_family = scrape(server)
    exported = {name: labels for samples in by_family.values() for name, labels in samples.items()}
    dashboard = load()
    used: set[str] = set()
    for expr in [*exprs(dashboard), *variable_queries(dashboard).values()]:
        metrics, labels = variable_names(expr) if expr.startswith("label_values(") else promql_names(expr)
        assert metrics, f"no metric in {expr!r}"
        unknown = sorted(metrics - set(exported))
        assert unknown == [], f"{expr!r} names metrics the webhook does not export"
        known_labels = TARGET_LABELS.union(*(exported[metric] for metric in metrics))
        assert labels <= known_labels, f"{expr!r}: labels {sorted(labels - known_labels)} are not on its metrics"
        used |= metrics

    # ...and the dashboard shows every family the webhook exports.
    # (prometheus_client's `<family>_created` timestamps come out as families of their own; no panel needs them.)
    created = {f"{family}_created" for family in by_family}
    hidden = {family for family, samples in by_family.items() if not used & set(samples) and family not in created}
    assert hidden == set(NOT_ON_DASHBOARD)


# --- the chart ---------------------------------------------------------------------------------------------------


def render(*args: str, namespace: str = NAMESPACE) -> list[Json]:
    result = subprocess.run(
        [tool("helm"), "template", RELEASE, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def dashboard_config_maps(manifests: list[Json]) -> list[Json]:
    return [m for m in manifests if m["kind"] == "ConfigMap" and "ecr-ptc-webhook.json" in m.get("data", {})]


def test_no_dashboard_unless_enabled() -> None:
    assert dashboard_config_maps(render("--set", f"registry={REGISTRY}")) == []
    off = render("--set", f"registry={REGISTRY}", "--set", "metrics.grafanaDashboard.labels.team=platform")
    assert dashboard_config_maps(off) == []


def test_the_dashboard_config_map_is_found_by_the_sidecar_and_holds_the_file() -> None:
    (config_map,) = dashboard_config_maps(render("--values", str(CHART / "ci" / "grafana-dashboard-values.yaml")))
    metadata = config_map["metadata"]
    assert metadata["name"] == f"{RELEASE}-dashboard"
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["grafana_dashboard"] == "1"  # the default, kept beside the extra label
    assert metadata["labels"]["team"] == "platform"
    assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert metadata["annotations"] == {"grafana_folder": "Kubernetes"}
    assert config_map["data"] == {"ecr-ptc-webhook.json": DASHBOARD.read_text(encoding="utf-8")}
    assert len(DASHBOARD.read_bytes()) < 512 * 1024  # well inside a ConfigMap's 1 MiB


def test_a_chart_packaged_without_the_dashboard_file_fails_instead_of_shipping_an_empty_one(tmp_path: Path) -> None:
    chart = tmp_path / "ecr-ptc-webhook"
    shutil.copytree(CHART, chart)
    (chart / "dashboards" / "ecr-ptc-webhook.json").unlink()
    command = [tool("helm"), "template", RELEASE, str(chart), "--set", f"registry={REGISTRY}"]
    enabled = subprocess.run(
        [*command, "--set", "metrics.grafanaDashboard.enabled=true"], capture_output=True, text=True, check=False
    )
    assert enabled.returncode != 0
    assert "dashboards/ecr-ptc-webhook.json is missing from the chart" in enabled.stderr
    assert subprocess.run(command, capture_output=True, text=True, check=False).returncode == 0


def test_the_dashboard_defaults_to_the_release_namespace_and_its_label_can_be_dropped() -> None:
    args = ("--set", f"registry={REGISTRY}", "--set", "metrics.grafanaDashboard.enabled=true")
    (config_map,) = dashboard_config_maps(render(*args, namespace="platform-tools"))
    assert config_map["metadata"]["namespace"] == "platform-tools"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in config_map["metadata"]
    relabel = ("--set", "metrics.grafanaDashboard.labels.grafana_dashboard=null")
    extra = ("--set-string", "metrics.grafanaDashboard.labels.dashboards=ecr")
    (relabelled,) = dashboard_config_maps(render(*args, *relabel, *extra))
    assert "grafana_dashboard" not in relabelled["metadata"]["labels"]
    assert relabelled["metadata"]["labels"]["dashboards"] == "ecr"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "metrics.grafanaDashboard.enabled=yes"], "'/metrics/grafanaDashboard/enabled': got string"),
        # Kubernetes refuses a label value that is not a string: `grafana_dashboard: 1` must be quoted.
        (
            ["--set", "metrics.grafanaDashboard.labels.grafana_dashboard=1"],
            "'/metrics/grafanaDashboard/labels/grafana_dashboard': got number",
        ),
        (["--set", "metrics.grafanaDashboard.namespace=Monitoring"], "'/metrics/grafanaDashboard/namespace'"),
        (["--set", "metrics.grafanaDashboard.folder=Kubernetes"], "additional properties 'folder' not allowed"),
    ],
)
def test_the_schema_rejects_bad_dashboard_values(args: list[str], message: str) -> None:
    result = subprocess.run(
        [tool("helm"), "template", RELEASE, str(CHART), "--set", f"registry={REGISTRY}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr
