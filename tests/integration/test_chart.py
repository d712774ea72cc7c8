"""The Helm chart, rendered by real helm over the ci/ value sets.

What a user installing it relies on: every manifest valid for the oldest and newest supported Kubernetes; the
webhooks routed per namespace label and never called for their own namespace; the pods locked down; certificates
wired in each mode and the self-managed CA kept across upgrades; values checked at install time; checkov clean or
explained; and the real webhook, started from the rendered config, answering each path as the chart wires it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jsonpatch
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from integration.server import WebhookProcess
from repository import SERVE_ARGS, tool
from reviews import make_pod, make_review

from webhook.core.config import TIER_NAME_MAX, TIER_NAME_PATTERN, parse_config
from webhook.core.registries import (
    ECR_HOST_PATTERN,
    ECR_PREFIX_MAX,
    ECR_PREFIX_MIN,
    ECR_PREFIX_PATTERN,
    TIERS_BY_NAME,
    UPSTREAM_KINDS,
)
from webhook.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

Manifest = dict[str, Any]

REPO: Final = Path(__file__).resolve().parents[2]
CHART: Final = REPO / "charts" / "ecr-ptc-webhook"
CI_VALUES: Final = sorted((CHART / "ci").glob("*-values.yaml"))
CI_IDS: Final = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
README: Final = CHART / "README.md"
RELEASE: Final = "ecr-ptc-webhook"
NAMESPACE: Final = "ecr-ptc-webhook"
SERVICE_HOST: Final = f"{RELEASE}.{NAMESPACE}.svc"
ALWAYS_EXCLUDED: Final = {"kube-system", "kube-node-lease"}
CRD_KINDS: Final = {
    "cert-manager.io/v1": {"Certificate", "Issuer"},
    "monitoring.coreos.com/v1": {"ServiceMonitor", "PrometheusRule"},
}
REGISTRY: Final = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
UPSTREAM_IMAGE: Final = "quay.io/prometheus/node-exporter:v1.8.2"


def _kube_versions() -> tuple[str, str]:
    """The oldest minor the chart declares (Chart.yaml kubeVersion) and the newest kubernetes-validate knows."""
    declared = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+\.\d+)\.0-0", declared)
    assert match, f"Chart.yaml kubeVersion {declared!r}: expected '>=X.Y.0-0'"
    return f"{match[1]}.0", str(kubernetes_validate.latest_version())


OLDEST, NEWEST = _kube_versions()


# --- tools and rendering ---------------------------------------------------------------------------------------


def helm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, check=False, timeout=120, env=env)


def template(*args: str, namespace: str = NAMESPACE, kube_version: str = OLDEST) -> subprocess.CompletedProcess[str]:
    return helm("template", RELEASE, str(CHART), "--namespace", namespace, "--kube-version", kube_version, *args)


def parse_manifests(text: str) -> tuple[Manifest, ...]:
    return tuple(doc for doc in yaml.safe_load_all(text) if doc)


def render(*args: str, namespace: str = NAMESPACE, kube_version: str = OLDEST) -> tuple[Manifest, ...]:
    result = template(*args, namespace=namespace, kube_version=kube_version)
    if result.returncode != 0:
        pytest.fail(f"helm template {' '.join(args)} failed:\n{result.stderr}")
    return parse_manifests(result.stdout)


@functools.cache
def render_ci(name: str, kube_version: str = OLDEST) -> tuple[Manifest, ...]:
    """The manifests of one ci/ value set (cached: read-only for the tests)."""
    return render("--values", str(CHART / "ci" / name), kube_version=kube_version)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def one(manifests: tuple[Manifest, ...], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in of_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if both_maps else value
    return merged


def chart_values(name: str) -> dict[str, Any]:
    """values.yaml with one ci/ value set over it, as helm merges them."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return merge(defaults, yaml.safe_load((CHART / "ci" / name).read_text()))


def webhook_pod(manifests: tuple[Manifest, ...]) -> dict[str, Any]:
    pod: dict[str, Any] = one(manifests, "Deployment")["spec"]["template"]["spec"]
    return pod


def label_value(webhook: dict[str, Any], label: str) -> str:
    """The namespace label value a webhook answers for (its `In` expression)."""
    (values,) = [e["values"] for e in webhook["namespaceSelector"]["matchExpressions"] if e["key"] == label]
    (value,) = values
    return str(value)


def routes(manifests: tuple[Manifest, ...], label: str = "ecr-ptc-webhook/rewrite") -> dict[str, str]:
    """Namespace label value -> the path the API server calls."""
    webhooks = one(manifests, "MutatingWebhookConfiguration")["webhooks"]
    return {label_value(w, label): w["clientConfig"]["service"]["path"] for w in webhooks}


def mounted_source(pod: dict[str, Any], path: str) -> tuple[str, str, str]:
    """Which (kind, object name, key) a file path in the webhook container comes from."""
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        relative = path.removeprefix(prefix)
        for source in volumes[mount["name"]]["projected"]["sources"]:
            for kind, spec in source.items():
                for item in spec.get("items", []):
                    if item["path"] == relative:
                        return kind, spec["name"], item["key"]
    pytest.fail(f"{path} is not mounted from a ConfigMap or Secret key")


def decode(data: str) -> bytes:
    return base64.b64decode(data)


# --- helm lint and the Kubernetes schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_helm_lint_strict(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "--values", str(values), "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kube_version", [OLDEST, NEWEST])
@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_every_manifest_matches_the_kubernetes_schemas(values: Path, kube_version: str) -> None:
    errors = []
    for manifest in render_ci(values.name, kube_version):
        if manifest["apiVersion"] in CRD_KINDS:
            # Custom resources have no schema here; their contents are asserted by the tests below.
            assert manifest["kind"] in CRD_KINDS[manifest["apiVersion"]]
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{manifest['kind']}/{manifest['metadata']['name']} {list(error.path)}: {error.message}")
    assert errors == []


def test_kubernetes_older_than_the_declared_floor_is_refused() -> None:
    result = template("--values", str(CI_VALUES[0]), kube_version="1.29.9")
    assert result.returncode != 0
    assert "incompatible with Kubernetes v1.29.9" in result.stderr


def test_eks_version_strings_meet_the_floor() -> None:
    assert template("--values", str(CI_VALUES[0]), kube_version="1.30.4-eks-a737599").returncode == 0


# --- the MutatingWebhookConfiguration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("default-values.yaml", {"enabled": "/mutate", "dry-run": "/audit"}),
        ("dry-run-values.yaml", {"enabled": "/audit", "dry-run": "/audit"}),
    ],
)
def test_the_namespace_label_value_picks_the_path(values: str, expected: dict[str, str]) -> None:
    assert routes(render_ci(values)) == expected


def test_the_namespace_label_key_is_configurable() -> None:
    assert routes(render_ci("full-values.yaml"), "example.com/image-cache") == {
        "enabled": "/mutate",
        "dry-run": "/audit",
    }


@pytest.mark.parametrize("namespace", [NAMESPACE, "platform-tools"])
@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_webhooks_are_never_called_for_their_own_or_system_namespaces(values: Path, namespace: str) -> None:
    manifests = render("--values", str(values), namespace=namespace)
    extra = set(chart_values(values.name)["webhook"]["excludedNamespaces"])
    for webhook in one(manifests, "MutatingWebhookConfiguration")["webhooks"]:
        selector = webhook["namespaceSelector"]
        assert set(selector) == {"matchExpressions"}, "nothing may widen the selector"
        (not_in,) = [e for e in selector["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name"]
        assert not_in["operator"] == "NotIn"
        assert set(not_in["values"]) == {namespace, *ALWAYS_EXCLUDED, *extra}
        assert "objectSelector" not in webhook


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_webhook_admission_settings(values: Path) -> None:
    manifests = render_ci(values.name)
    service = one(manifests, "Service")
    expected_policy = chart_values(values.name)["webhook"]["failurePolicy"]
    webhooks = one(manifests, "MutatingWebhookConfiguration")["webhooks"]
    assert len(webhooks) == 2
    for webhook in webhooks:
        assert webhook["failurePolicy"] == expected_policy
        assert webhook["timeoutSeconds"] == 3
        assert webhook["sideEffects"] == "None"
        assert webhook["reinvocationPolicy"] == "IfNeeded"
        assert webhook["matchPolicy"] == "Equivalent"
        assert webhook["admissionReviewVersions"] == ["v1"]
        operations = {
            (tuple(rule["operations"]), tuple(rule["resources"]), tuple(rule["apiGroups"]), tuple(rule["apiVersions"]))
            for rule in webhook["rules"]
        }
        assert operations == {
            (("CREATE",), ("pods",), ("",), ("v1",)),
            (("UPDATE",), ("pods/ephemeralcontainers",), ("",), ("v1",)),
        }
        conditions = " ".join(condition["expression"] for condition in webhook["matchConditions"])
        assert "kubernetes.io/config.mirror" in conditions
        assert "'system:nodes' in request.userInfo.groups" in conditions
        target = webhook["clientConfig"]["service"]
        assert (target["name"], target["namespace"]) == (service["metadata"]["name"], NAMESPACE)
        assert target["port"] in {port["port"] for port in service["spec"]["ports"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "rules=discover", "--set", "webhook.failurePolicy=Fail"],
            "rules=discover needs webhook.failurePolicy=Ignore",
        ),
        (
            ["--set", "verify=true", "--set", "verifyBudgetSeconds=2", "--set", "webhook.timeoutSeconds=3"],
            "verifyBudgetSeconds (2) must be at most half of webhook.timeoutSeconds (3)",
        ),
    ],
)
def test_values_that_would_make_the_webhook_unsafe_fail_the_install(args: list[str], message: str) -> None:
    result = template("--set", f"registry={REGISTRY}", *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_verify_budget_within_half_the_timeout_installs() -> None:
    # `--set` reads 1.5 as a string (helm parses only integers), which the schema refuses; `--set-json` is a number.
    result = template("--set", f"registry={REGISTRY}", "--set", "verify=true", "--set-json", "verifyBudgetSeconds=1.5")
    assert result.returncode == 0, result.stderr


def test_failure_policy_fail_needs_more_than_one_replica() -> None:
    result = template("--set", f"registry={REGISTRY}", "--set", "webhook.failurePolicy=Fail", "--set", "replicaCount=1")
    assert result.returncode != 0
    assert "webhook.failurePolicy=Fail needs replicaCount >= 2" in result.stderr


# --- the webhook's config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_config_map_is_the_webhook_config_from_the_top_level_values(values: Path) -> None:
    config = yaml.safe_load(one(render_ci(values.name), "ConfigMap", RELEASE)["data"]["config.yaml"])
    chosen = chart_values(values.name)
    keys = (
        "registry",
        "tiers",
        "dryRun",
        "digests",
        "pullSecrets",
        "movingTags",
        "exclude",
        "include",
        "rules",
        "rulesRefreshSeconds",
        "verify",
        "verifyBudgetSeconds",
    )
    expected = {key: chosen[key] for key in keys}
    if chosen["prefixes"]:
        expected["prefixes"] = chosen["prefixes"]
    if chosen["upstreams"]:
        expected["upstreams"] = chosen["upstreams"]
    assert config == expected
    # ...and the webhook accepts it as it is.
    assert parse_config(config).registry == chosen["registry"]


def test_registry_alone_gives_the_default_tiers() -> None:
    manifests = render("--set", f"registry={REGISTRY}")
    config = parse_config(yaml.safe_load(one(manifests, "ConfigMap")["data"]["config.yaml"]))
    assert config.tiers == ("quay", "k8s")
    assert not config.dry_run


def pods_checksum(*args: str) -> str:
    annotations = one(render(*args), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/config"])


def test_a_config_change_rolls_the_pods_and_a_new_certificate_does_not() -> None:
    base = pods_checksum("--set", f"registry={REGISTRY}")
    # Every render issues a new self-managed serving certificate: the pods reload it, no roll.
    assert pods_checksum("--set", f"registry={REGISTRY}") == base
    assert pods_checksum("--set", f"registry={REGISTRY}", "--set", "dryRun=true") != base
    assert pods_checksum("--set", f"registry={REGISTRY}", "--set", "tiers={quay}") != base


def test_schema_patterns_are_the_webhooks_registry_facts() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    assert schema["registry"]["pattern"] == f"^$|^(?:{ECR_HOST_PATTERN.pattern})$"
    built_in, user_defined = schema["tiers"]["items"]["anyOf"]
    assert built_in["enum"] == list(TIERS_BY_NAME)
    assert (user_defined["pattern"], user_defined["maxLength"]) == (f"^(?:{TIER_NAME_PATTERN.pattern})$", TIER_NAME_MAX)
    assert list(schema["prefixes"]["properties"]) == list(TIERS_BY_NAME)
    assert schema["prefixes"]["additionalProperties"] is False
    upstream = schema["upstreams"]["items"]
    assert upstream["properties"]["name"]["not"]["enum"] == list(TIERS_BY_NAME)
    assert upstream["properties"]["name"]["pattern"] == user_defined["pattern"]
    assert upstream["properties"]["upstreamRegistry"]["enum"] == list(UPSTREAM_KINDS)
    hosts = {
        rule["if"]["properties"]["upstreamRegistry"]["const"]: [
            alternative["pattern"] for alternative in rule["then"]["properties"]["host"]["anyOf"]
        ]
        for rule in upstream["allOf"]
    }
    assert hosts == {name: [f"^(?:{pattern})$" for pattern in kind.patterns] for name, kind in UPSTREAM_KINDS.items()}
    # validate.yaml names the built-in tiers too (helm cannot read the schema from a template).
    validate = (CHART / "templates" / "validate.yaml").read_text()
    listed = re.search(r"\$builtIn := list ((?:\"[a-z0-9-]+\" ?)+)", validate)
    assert listed is not None
    assert re.findall(r"\"([a-z0-9-]+)\"", listed.group(1)) == list(TIERS_BY_NAME)
    prefix = json.loads((CHART / "values.schema.json").read_text())["definitions"]["prefix"]
    assert prefix["pattern"] == f"^(?:{ECR_PREFIX_PATTERN.pattern})$"
    assert (prefix["minLength"], prefix["maxLength"]) == (ECR_PREFIX_MIN, ECR_PREFIX_MAX)


# --- values checked at install time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "registry=quay.io"], "at '/registry': 'quay.io' does not match pattern"),
        (["--set", "registry=123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil"], "at '/registry'"),
        (["--set", "tiers={quay,Docker_Hub}"], "at '/tiers/1': 'anyOf' failed"),
        (
            [
                "--set",
                "upstreams[0].name=acme,upstreams[0].upstreamRegistry=azure-container-registry",
                "--set",
                "upstreams[0].host=acme.example.com,upstreams[0].prefix=acme",
            ],
            "at '/upstreams/0/host': 'anyOf' failed",
        ),
        (
            [
                "--set",
                "upstreams[0].name=acme,upstreams[0].upstreamRegistry=ecr",
                "--set",
                "upstreams[0].host=acmecorp.azurecr.io,upstreams[0].prefix=acme",
            ],
            "at '/upstreams/0/host': 'anyOf' failed",
        ),
        (
            [
                "--set",
                "upstreams[0].name=quay,upstreams[0].upstreamRegistry=quay",
                "--set",
                "upstreams[0].host=quay.io,upstreams[0].prefix=acme",
            ],
            "at '/upstreams/0/upstreamRegistry': value must be one of 'azure-container-registry', 'ecr'",
        ),
        (["--set", "dryRun=yes"], "at '/dryRun': got string, want boolean"),
        (["--set-string", "dryRun=true"], "at '/dryRun': got string, want boolean"),
        (["--set", "digests=always"], "at '/digests': value must be one of 'rewrite', 'skip'"),
        (["--set", "rules=dynamic"], "at '/rules': value must be one of 'static', 'discover'"),
        (["--set", "verify=sometimes"], "at '/verify': got string, want boolean"),
        (["--set", "verifyBudgetSeconds=5"], "at '/verifyBudgetSeconds'"),
        (["--set", "prefixes.quay=Quay.IO"], "at '/prefixes/quay'"),
        (["--set", "prefixes.dockerhub=hub"], "at '/prefixes': additional properties 'dockerhub' not allowed"),
        (["--set", "certificates.mode=vault"], "at '/certificates/mode'"),
        (["--set", "webhook.failurePolicy=Never"], "at '/webhook/failurePolicy'"),
        (["--set", "webhook.timeoutSeconds=31"], "at '/webhook/timeoutSeconds'"),
        (["--set", "dryrun=true"], "additional properties 'dryrun' not allowed"),
        (["--set", "pullSecrets=skip"], "at '/pullSecrets': value must be one of 'keep', 'rewrite'"),
        (["--set", "movingTags=true"], "at '/movingTags'"),
        (["--set", "exclude=quay.io/acme/**"], "at '/exclude': got string, want array"),
        (["--set", "exclude={quay.io/acme/app:v1}"], "at '/exclude/0'"),
        (["--set", "include={https://quay.io/acme}"], "at '/include/0'"),
        (["--set", "exclude={nginx@sha256:abc}"], "at '/exclude/0'"),
        (["--set-json", 'exclude=["quay.io//x"]'], "at '/exclude/0'"),
        (["--set", "metrics.prometheusRule.alerts.noReplicaReady.for=5 minutes"], "noReplicaReady/for'"),
        (["--set-json", "metrics.prometheusRule.alerts.failingOpen.ratio=5"], "failingOpen/ratio'"),
        (["--set", "metrics.prometheusRule.alerts.certificateExpiring.days=0"], "certificateExpiring/days'"),
        (
            ["--set", "metrics.prometheusRule.alerts.certificateExpiry.days=7"],
            "additional properties 'certificateExpiry'",
        ),
        (
            ["--set", "metrics.prometheusRule.runbookBaseUrl=github.com/x"],
            "at '/metrics/prometheusRule/runbookBaseUrl'",
        ),
        (["--set-string", 'metrics.prometheusRule.selector={job="x"}'], "at '/metrics/prometheusRule/selector'"),
    ],
)
def test_the_schema_rejects_bad_values_with_a_message_naming_the_key(args: list[str], message: str) -> None:
    chosen = ["--set", f"registry={REGISTRY}", *args]
    result = template(*chosen)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "registry is required"),
        (
            ["--set", f"registry={REGISTRY}", "--set", "certificates.mode=existingSecret"],
            "certificates.existingSecret.name is required",
        ),
        (
            [
                *("--set", f"registry={REGISTRY}", "--set", "certificates.mode=existingSecret"),
                *(
                    "--set",
                    "certificates.existingSecret.name=tls",
                    "--set",
                    "certificates.existingSecret.caBundle=bm8=",
                ),
            ],
            "certificates.existingSecret.caBundle must be the base64 of the PEM CA certificate",
        ),
        (
            [
                *("--set", f"registry={REGISTRY}", "--set", "autoscaling.enabled=true"),
                *("--set", "autoscaling.minReplicas=5", "--set", "autoscaling.maxReplicas=3"),
            ],
            "autoscaling.minReplicas (5) is greater than autoscaling.maxReplicas (3)",
        ),
        (
            ["--set", f"registry={REGISTRY}", "--set", "tiers={quay,dockerhub}"],
            'tiers: unknown tier "dockerhub"; known: quay, k8s, docker-hub, ghcr, gitlab, chainguard',
        ),
        (
            [
                "--set",
                f"registry={REGISTRY}",
                "--set",
                "tiers={quay,acme}",
                "--set",
                "upstreams[0].name=acme-acr",
                "--set",
                "upstreams[0].upstreamRegistry=azure-container-registry",
                "--set",
                "upstreams[0].host=acmecorp.azurecr.io,upstreams[0].prefix=acr",
            ],
            'tiers: unknown tier "acme"; known: quay, k8s, docker-hub, ghcr, gitlab, chainguard, acme-acr',
        ),
        (
            ["--set", f"registry={REGISTRY}", "--set", "preStopSleepSeconds=30"],
            "preStopSleepSeconds (30) must be less than terminationGracePeriodSeconds (30)",
        ),
    ],
)
def test_contradictory_or_missing_values_fail_with_the_fix(args: list[str], message: str) -> None:
    result = template(*args)
    assert result.returncode != 0
    assert message in result.stderr


# --- the pods --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_pods_are_locked_down(values: Path) -> None:
    manifests = render_ci(values.name)
    pod = webhook_pod(manifests)
    assert pod["automountServiceAccountToken"] is False
    assert one(manifests, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    # No feature needs the Kubernetes API, so no RBAC at all.
    assert not {m["kind"] for m in manifests} & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_pods_serve_the_rendered_config_and_the_mounted_certificate(values: Path) -> None:
    manifests = render_ci(values.name)
    pod = webhook_pod(manifests)
    (container,) = pod["containers"]
    assert container["args"] == SERVE_ARGS
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    config_map = one(manifests, "ConfigMap", RELEASE)["metadata"]["name"]  # not the dashboard's
    assert mounted_source(pod, "/etc/ecr-ptc-webhook/config.yaml") == ("configMap", config_map, "config.yaml")
    if chart_values(values.name)["certificates"]["mode"] == "existingSecret":
        secret = chart_values(values.name)["certificates"]["existingSecret"]["name"]
    else:
        secret = f"{RELEASE}-tls"
    assert mounted_source(pod, "/etc/ecr-ptc-webhook/tls/tls.crt") == ("secret", secret, "tls.crt")
    assert mounted_source(pod, "/etc/ecr-ptc-webhook/tls/tls.key") == ("secret", secret, "tls.key")
    # subPath mounts are never updated by the kubelet: the webhook would never see a rotated certificate.
    mounts = [m for c in pod["containers"] for m in c["volumeMounts"]]
    assert all("subPath" not in m and "subPathExpr" not in m for m in mounts)


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_probes_and_graceful_stop(values: Path) -> None:
    pod = webhook_pod(render_ci(values.name))
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < sleep < pod["terminationGracePeriodSeconds"]


def test_availability_defaults() -> None:
    manifests = render_ci("default-values.yaml")
    deployment = one(manifests, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = one(manifests, "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert all(c["labelSelector"] == {"matchLabels": selector} for c in spread)
    assert "priorityClassName" not in deployment["spec"]["template"]["spec"]
    assert not of_kind(manifests, "HorizontalPodAutoscaler")
    assert not of_kind(manifests, "NetworkPolicy")
    assert not of_kind(manifests, "ServiceMonitor")


def test_the_service_selects_exactly_the_webhook_pods() -> None:
    manifests = render_ci("default-values.yaml")
    service = one(manifests, "Service")
    deployment = one(manifests, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("https", 443, "https")
    # The helm test pod carries the chart's labels but must not become an endpoint.
    test_pod = one(manifests, "Pod")
    assert not service["spec"]["selector"].items() <= test_pod["metadata"]["labels"].items()


def test_optional_objects() -> None:
    manifests = render_ci("full-values.yaml")
    deployment = one(manifests, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"
    assert deployment["spec"]["template"]["spec"]["priorityClassName"] == "system-cluster-critical"
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("@sha256:" + "0" * 64)

    autoscaler = one(manifests, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (3, 6)

    policy = one(manifests, "NetworkPolicy")["spec"]
    assert policy["podSelector"] == {"matchLabels": selector}
    assert policy["policyTypes"] == ["Ingress"]
    ingress, scrapers = policy["ingress"]
    assert ingress["ports"] == scrapers["ports"] == [{"port": 8443, "protocol": "TCP"}]
    test_pod_labels = one(manifests, "Pod")["metadata"]["labels"]
    assert ingress["from"][:2] == [{"ipBlock": {"cidr": "10.0.0.0/19"}}, {"ipBlock": {"cidr": "10.0.32.0/19"}}]
    (test_pod_peer,) = ingress["from"][2:]
    assert test_pod_peer["podSelector"]["matchLabels"].items() <= test_pod_labels.items(), "helm test gets through"
    assert scrapers["from"] == [  # one peer: both selectors must match (a Prometheus pod in the monitoring namespace)
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]

    monitor = one(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"] == {"matchLabels": selector}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == ("https", "https", "/metrics")
    assert endpoint["tlsConfig"] == {
        "serverName": SERVICE_HOST,
        "ca": {"secret": {"name": f"{RELEASE}-tls", "key": "ca.crt"}},
    }
    assert endpoint["port"] in {port["name"] for port in one(manifests, "Service")["spec"]["ports"]}


def test_the_prometheus_rule_is_opt_in_and_lands_where_prometheus_selects_it() -> None:
    assert of_kind(render_ci("default-values.yaml"), "PrometheusRule") == []
    manifests = render_ci("prometheus-rule-values.yaml")
    rule = one(manifests, "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"].items() >= one(manifests, "Deployment")["metadata"]["labels"].items()
    groups = rule["spec"]["groups"]
    assert [group["interval"] for group in groups] == ["1m"] * len(groups)
    rules = {item["alert"]: item for group in groups for item in group["rules"]}
    assert len(rules) == 9
    assert all(item["labels"]["team"] == "platform" for item in rules.values())
    assert rules["EcrPtcWebhookFailingOpen"]["for"] == "15m"
    assert "[15m]" in rules["EcrPtcWebhookFailingOpen"]["expr"]
    assert rules["EcrPtcWebhookFailingOpen"]["expr"].rstrip().endswith("> 0.05")
    # Three refresh intervals of the rules: discover read (rulesRefreshSeconds 300).
    assert rules["EcrPtcWebhookRulesStale"]["expr"].rstrip().endswith("> 900")
    elsewhere = render(
        "--values",
        str(CHART / "ci" / "prometheus-rule-values.yaml"),
        "--set",
        "metrics.prometheusRule.namespace=monitoring",
    )
    assert one(elsewhere, "PrometheusRule")["metadata"]["namespace"] == "monitoring"
    # The alerts watch the series the chart's ServiceMonitor scrapes: job is the Service's name.
    assert (
        f'job="{one(manifests, "Service")["metadata"]["name"]}",namespace="{NAMESPACE}"'
        in rules["EcrPtcWebhookFailingOpen"]["expr"]
    )


def test_an_enabled_network_policy_without_sources_is_refused() -> None:
    result = template("--set", f"registry={REGISTRY}", "--set", "networkPolicy.enabled=true")
    assert result.returncode != 0
    assert "networkPolicy.from is empty" in result.stderr
    assert "aws eks describe-cluster" in result.stderr  # how to find the addresses


def test_every_rule_of_the_network_policy_names_its_sources_unless_told_otherwise() -> None:
    cidr = ("--set", "networkPolicy.from[0].ipBlock.cidr=10.0.0.0/19")
    for extra in ((), ("--set", "networkPolicy.metrics.namespaceSelector.matchLabels.team=monitoring")):
        manifests = render("--set", f"registry={REGISTRY}", "--set", "networkPolicy.enabled=true", *cidr, *extra)
        rules = one(manifests, "NetworkPolicy")["spec"]["ingress"]
        assert len(rules) == 1 + len(extra) // 2
        assert all(rule["from"] and all(peer for peer in rule["from"]) for rule in rules), "no rule admits any source"
    scraper = rules[-1]["from"]
    assert scraper == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]

    manifests = render(
        *("--set", f"registry={REGISTRY}", "--set", "networkPolicy.enabled=true"),
        *("--set", "networkPolicy.allowAllSources=true"),
    )
    (rule,) = one(manifests, "NetworkPolicy")["spec"]["ingress"]
    assert "from" not in rule, "allowAllSources: the webhook port from anywhere, said explicitly"
    assert rule["ports"] == [{"port": 8443, "protocol": "TCP"}]


def test_an_empty_network_policy_peer_is_rejected_by_the_schema() -> None:
    result = template(
        *("--set", f"registry={REGISTRY}", "--set", "networkPolicy.enabled=true"),
        *("--set-json", "networkPolicy.from=[{}]"),
    )
    assert result.returncode != 0
    assert "networkPolicy" in result.stderr


def test_service_monitor_can_skip_verification() -> None:
    manifests = render(
        "--values", str(CHART / "ci" / "full-values.yaml"), "--set", "serviceMonitor.insecureSkipVerify=true"
    )
    (endpoint,) = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}


# --- certificates ----------------------------------------------------------------------------------------------


def assert_serves_the_service_name(tls_crt: bytes, ca_crt: bytes) -> None:
    certificate = x509.load_pem_x509_certificate(tls_crt)
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_crt))
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_HOST in names.get_values_for_type(x509.DNSName)


def test_self_managed_certificates_match_the_ca_bundle() -> None:
    manifests = render_ci("default-values.yaml")
    serving = one(manifests, "Secret", f"{RELEASE}-tls")
    ca = one(manifests, "Secret", f"{RELEASE}-ca")
    assert serving["type"] == ca["type"] == "kubernetes.io/tls"
    assert serving["data"]["ca.crt"] == ca["data"]["tls.crt"]
    for webhook in one(manifests, "MutatingWebhookConfiguration")["webhooks"]:
        assert webhook["clientConfig"]["caBundle"] == ca["data"]["tls.crt"]
    assert_serves_the_service_name(decode(serving["data"]["tls.crt"]), decode(ca["data"]["tls.crt"]))
    # The CA's key stays out of the pods.
    volumes = webhook_pod(manifests)["volumes"]
    assert f"{RELEASE}-ca" not in json.dumps(volumes)


def test_cert_manager_issues_from_its_own_ca_and_injects_the_bundle() -> None:
    manifests = render_ci("cert-manager-values.yaml")
    assert not of_kind(manifests, "Secret")
    configuration = one(manifests, "MutatingWebhookConfiguration")
    serving = one(manifests, "Certificate", RELEASE)
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}"
    assert all("caBundle" not in w["clientConfig"] for w in configuration["webhooks"])
    assert serving["spec"]["secretName"] == f"{RELEASE}-tls"
    assert SERVICE_HOST in serving["spec"]["dnsNames"]
    assert serving["spec"]["privateKey"]["rotationPolicy"] == "Always"
    # serving Certificate <- CA Issuer <- CA Certificate <- self-signed Issuer
    ca_issuer = one(manifests, "Issuer", serving["spec"]["issuerRef"]["name"])
    ca_certificate = one(manifests, "Certificate", f"{RELEASE}-ca")
    assert ca_certificate["spec"]["isCA"] is True
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_certificate["spec"]["secretName"]
    assert "selfSigned" in one(manifests, "Issuer", ca_certificate["spec"]["issuerRef"]["name"])["spec"]


def test_cert_manager_with_the_users_issuer() -> None:
    manifests = render_ci("cert-manager-issuer-values.yaml")
    assert not of_kind(manifests, "Issuer")
    serving = one(manifests, "Certificate")
    assert serving["spec"]["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_existing_secret_and_its_ca_bundle() -> None:
    manifests = render_ci("existing-secret-values.yaml")
    given = chart_values("existing-secret-values.yaml")["certificates"]["existingSecret"]
    assert not of_kind(manifests, "Secret")
    assert not of_kind(manifests, "Certificate")
    for webhook in one(manifests, "MutatingWebhookConfiguration")["webhooks"]:
        assert webhook["clientConfig"]["caBundle"] == given["caBundle"]
    x509.load_pem_x509_certificate(decode(given["caBundle"]))


@pytest.mark.parametrize("values", CI_VALUES, ids=CI_IDS)
def test_helm_test_probes_readyz_over_https_with_the_webhooks_ca(values: Path) -> None:
    manifests = render_ci(values.name)
    test_pod = one(manifests, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = test_pod["spec"]["containers"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["READYZ_URL"] == f"https://{SERVICE_HOST}:443/readyz"
    bundle = one(manifests, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"].get("caBundle")
    if bundle is None:  # cert-manager: the CA is only known in the cluster
        assert env["CA_FILE"] == "/etc/ecr-ptc-webhook-ca/ca.crt"
        (volume,) = test_pod["spec"]["volumes"]
        assert volume["secret"]["secretName"] == f"{RELEASE}-tls"
    else:
        assert env["CA_PEM"].encode() == decode(bundle)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


# --- the self-managed CA survives upgrades (helm's lookup against a fake API server) ----------------------------

_API_RESOURCES: Final = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("pods", "Pod", True),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "admissionregistration.k8s.io/v1": [("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False)],
}


class _FakeApiServer(ThreadingHTTPServer):
    """Just enough of the Kubernetes API for helm: version, discovery, and GET of the objects it holds."""

    def __init__(self, objects: dict[str, Manifest]) -> None:
        super().__init__(("127.0.0.1", 0), _FakeApiHandler)
        self.objects = objects
        self.requested: list[str] = []

    def document(self, path: str) -> Manifest | None:
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = [
                {"name": gv.split("/")[0], "versions": [v], "preferredVersion": v}
                for gv in _API_RESOURCES
                if "/" in gv
                for v in [{"groupVersion": gv, "version": gv.split("/")[1]}]
            ]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        group_version = path.removeprefix("/api/").removeprefix("/apis/")
        if group_version in _API_RESOURCES:
            resources = [
                {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": ["get"]}
                for name, kind, namespaced in _API_RESOURCES[group_version]
            ]
            return {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}
        return self.objects.get(path)


class _FakeApiHandler(BaseHTTPRequestHandler):
    server: _FakeApiServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.requested.append(path)
        document = self.server.document(path)
        status = 200 if document is not None else 404
        body = json.dumps(document or {"kind": "Status", "apiVersion": "v1", "reason": "NotFound", "code": 404})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Quiet: the test reads `requested` instead."""


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[tuple[_FakeApiServer, Path]]:
    server = _FakeApiServer({})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    try:
        yield server, kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.integration
def test_helm_upgrade_keeps_the_self_managed_ca_and_renews_the_serving_certificate(
    fake_api: tuple[_FakeApiServer, Path], tmp_path: Path
) -> None:
    server, kubeconfig = fake_api
    installed = render_ci("default-values.yaml")
    ca_secret = one(installed, "Secret", f"{RELEASE}-ca")
    # As `helm install` left it in the cluster: owned by the release.
    owned = {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}
    stored = {**ca_secret, "metadata": {**ca_secret["metadata"], "annotations": owned}}
    server.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/{RELEASE}-ca"] = stored

    # `helm upgrade` renders like this: with lookup answered by the cluster.
    result = helm(
        *("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(CI_VALUES[0])),
        *("--kubeconfig", str(kubeconfig), "--dry-run=server", "--disable-openapi-validation"),
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{RELEASE}-ca" in server.requested
    upgraded = parse_manifests(result.stdout)

    assert one(upgraded, "Secret", f"{RELEASE}-ca")["data"] == ca_secret["data"]
    for webhook in one(upgraded, "MutatingWebhookConfiguration")["webhooks"]:
        assert webhook["clientConfig"]["caBundle"] == ca_secret["data"]["tls.crt"]
    serving = one(upgraded, "Secret", f"{RELEASE}-tls")["data"]
    assert serving["tls.crt"] != one(installed, "Secret", f"{RELEASE}-tls")["data"]["tls.crt"]
    assert_serves_the_service_name(decode(serving["tls.crt"]), decode(ca_secret["data"]["tls.crt"]))


# --- documentation ---------------------------------------------------------------------------------------------

_KEY_LINE: Final = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?: |$)")


def documented_values() -> tuple[list[tuple[str, str]], list[str]]:
    """values.yaml's documented keys (dotted key, comment above it) and its groups (keys without a comment).

    A key with a comment is one documented value, whatever its type; a key without one is a group whose keys are
    documented one by one.
    """
    documented: list[tuple[str, str]] = []
    groups: list[str] = []
    comment: list[str] = []
    parents: list[tuple[int, str]] = []
    inside: int | None = None  # indentation of a documented value whose body we are skipping
    for line in (CHART / "values.yaml").read_text().splitlines():
        if not line.strip():
            comment = []
            continue
        indent = len(line) - len(line.lstrip(" "))
        if inside is not None and indent > inside:
            continue
        inside = None
        if line.lstrip().startswith("#"):
            comment.append(line.strip().removeprefix("#").strip())
            continue
        match = _KEY_LINE.match(line)
        assert match, f"values.yaml: unexpected line outside a documented value: {line!r}"
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key = ".".join([name for _, name in parents] + [match["key"]])
        if comment:
            documented.append((key, " ".join(comment)))
            inside = indent
        else:
            groups.append(key)
            parents.append((indent, match["key"]))
        comment = []
    return documented, groups


def lookup(values: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        values = values[part]
    return values


def values_table() -> str:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for key, description in documented_values()[0]:
        default = json.dumps(lookup(defaults, key), separators=(", ", ": "))
        rows.append(f"| `{key}` | `{default}` | {description.replace('|', '&#124;')} |")
    return "\n".join(rows)


def test_every_value_is_documented_by_a_comment_above_it() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    documented, groups = documented_values()
    for group in groups:
        value = lookup(defaults, group)
        assert isinstance(value, dict), f"values.yaml: `{group}` needs a comment right above it"
        assert value, f"values.yaml: `{group}` needs a comment right above it"
    leaves = {key for key, _ in documented}

    def keys(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in values.items():
            path = prefix + key
            if path in leaves:
                yield path
            else:
                assert isinstance(value, dict), f"values.yaml: `{path}` is not documented"
                yield from keys(value, path + ".")

    assert set(keys(defaults)) == leaves


def test_readme_values_table_is_generated_from_values_yaml() -> None:
    text = README.read_text()
    start, end = "<!-- values:start -->\n", "<!-- values:end -->"
    current = text[text.index(start) + len(start) : text.index(end)]
    expected = values_table() + "\n"
    if os.environ.get("UPDATE_CHART_README") == "1":
        README.write_text(text.replace(start + current + end, start + expected + end))
        return
    assert current == expected, (
        "charts/ecr-ptc-webhook/README.md's values table is stale: rerun with UPDATE_CHART_README=1"
    )


def test_readme_shows_the_example_policy_as_it_is_tested() -> None:
    example = (CHART / "examples" / "validatingadmissionpolicy.yaml").read_text()
    assert f"<!-- example:validatingadmissionpolicy.yaml -->\n```yaml\n{example}```\n" in README.read_text()


@pytest.mark.parametrize("kube_version", [OLDEST, NEWEST])
def test_example_validating_admission_policy_matches_the_schemas(kube_version: str) -> None:
    documents = parse_manifests((CHART / "examples" / "validatingadmissionpolicy.yaml").read_text())
    assert [d["kind"] for d in documents] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    for document in documents:
        kubernetes_validate.validate(document, kube_version, strict=True)
    policy, binding = documents
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"ecr-ptc-webhook/rewrite": "enabled"}
    }


# --- checkov ---------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_checkov_finds_nothing_the_chart_does_not_explain(tmp_path: Path) -> None:
    for values in CI_VALUES:
        rendered = template("--values", str(values))
        assert rendered.returncode == 0, rendered.stderr
        (tmp_path / values.name).write_text(rendered.stdout)
    # --skip-download: no network; the checks ship with checkov.
    command = [tool("checkov"), "--framework", "kubernetes", "--directory", str(tmp_path)]
    result = subprocess.run(
        [*command, "--output", "json", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    results = report["results"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})" for c in results["failed_checks"]
    ]
    assert failed == [], "checkov findings without a checkov.io/skip annotation and reason in the chart"
    unexplained = [c["check_id"] for c in results["skipped_checks"] if not c["check_result"].get("suppress_comment")]
    assert unexplained == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0


# --- the real webhook, started from the rendered config --------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("values", ["default-values.yaml", "dry-run-values.yaml"])
def test_the_webhook_started_from_the_rendered_config_answers_as_the_chart_wires_it(
    values: str, tmp_path: Path
) -> None:
    manifests = render_ci(values)
    config = tmp_path / "config.yaml"
    config.write_text(one(manifests, "ConfigMap")["data"]["config.yaml"])
    rewritten = f"{REGISTRY}/{TIERS_BY_NAME['quay'].default_prefix}/prometheus/node-exporter:v1.8.2"
    wired = routes(manifests)
    assert set(wired) == {"enabled", "dry-run"}

    with WebhookProcess(tmp_path, config) as server:
        for label, path in wired.items():
            review = make_review(make_pod(UPSTREAM_IMAGE))
            status, answer = server.request("POST", path, review)
            assert status == 200, (label, path, answer)
            assert answer["apiVersion"] == "admission.k8s.io/v1"
            assert answer["kind"] == "AdmissionReview"
            response = answer["response"]
            assert response["uid"] == review["request"]["uid"]
            assert response["allowed"] is True
            if path == "/mutate":
                assert response["patchType"] == "JSONPatch"
                patch = json.loads(decode(response["patch"]))
                patched = jsonpatch.apply_patch(review["request"]["object"], patch)
                assert patched["spec"]["containers"][0]["image"] == rewritten
            else:
                assert "patch" not in response
                assert "patchType" not in response
                assert any(UPSTREAM_IMAGE in w and rewritten in w for w in response["warnings"]), response
    expected_mutate = not chart_values(values)["dryRun"]
    assert (wired["enabled"] == "/mutate") is expected_mutate


def test_an_invalid_pattern_the_schema_lets_through_stops_the_webhook_at_start_up() -> None:
    # The schema checks the shape; the webhook compiles each pattern, so unbalanced brackets fail at start-up with a
    # message that names the key and the pattern (the pods crash-loop, never admit with a broken filter).
    manifests = render("--set", f"registry={REGISTRY}", "--set", "exclude={quay.io/acme/[abc}")
    config = yaml.safe_load(one(manifests, "ConfigMap")["data"]["config.yaml"])
    assert config["exclude"] == ["quay.io/acme/[abc"]
    with pytest.raises(ConfigError, match=r"config key `exclude`: pattern 'quay.io/acme/\[abc': unbalanced brackets"):
        parse_config(config)
