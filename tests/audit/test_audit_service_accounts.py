"""`audit` and `rewrite` know the imagePullSecrets a pod gets from its ServiceAccount at admission."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from audit.audit_support import REGISTRY, Cli, cli_fixture, write_config

from webhook.audit.service_accounts import ServiceAccounts, account_of, service_accounts_in
from webhook.core.workloads import workloads

if TYPE_CHECKING:
    from pathlib import Path

cli = cli_fixture()


def service_account(name: str, namespace: str, *secrets: str) -> dict[str, Any]:
    account: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    account["metadata"]["namespace"] = namespace
    if secrets:
        account["imagePullSecrets"] = [{"name": secret} for secret in secrets]
    return account


def deployment(name: str, namespace: str, *images: str, account: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    if account is not None:
        spec["serviceAccountName"] = account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": {}, "spec": spec}},
    }


def manifests(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


@pytest.fixture
def config(tmp_path: Path) -> str:
    return str(write_config(tmp_path))


def audit_json(cli: Cli, config: str, text: str) -> tuple[dict[str, str], str]:
    code, out, err = cli("audit", "--config", config, "-f", "-", "--output", "json", stdin=text)
    assert code == 0, err
    return {item["name"] + "/" + item["container"]: item["reason"] for item in map(json.loads, out.splitlines())}, err


PRIVATE = "quay.io/acme/private:v1"
PAUSE = "registry.k8s.io/pause:3.10"


@pytest.mark.parametrize("account_first", [True, False])
def test_a_service_accounts_pull_secrets_keep_its_pods_private_images_wherever_it_stands(
    cli: Cli, config: str, *, account_first: bool
) -> None:
    account = service_account("puller", "shop", "quay-robot")
    app = deployment("app", "shop", PRIVATE, PAUSE, account="puller")
    other = deployment("other", "shop", PRIVATE)  # runs as `default`, which has no secrets here
    default = service_account("default", "shop")
    objects = (account, default, app, other) if account_first else (app, other, account, default)
    reasons, _ = audit_json(cli, config, manifests(*objects))
    assert reasons == {"app/c0": "pull-secret", "app/c1": "rewritten", "other/c0": "rewritten"}


def test_service_accounts_inside_a_list_count(cli: Cli, config: str) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [service_account("default", "shop", "quay-robot")]}
    reasons, _ = audit_json(cli, config, manifests(listed, deployment("app", "shop", PRIVATE)))
    assert reasons == {"app/c0": "pull-secret"}


def test_the_table_counts_what_pull_secrets_kept_and_names_accounts_it_could_not_know(cli: Cli, config: str) -> None:
    text = manifests(
        service_account("default", "shop", "quay-robot"),
        deployment("a", "shop", PRIVATE, "quay.io/acme/other:v2"),
        deployment("b", "shop", PRIVATE),
        deployment("c", "data", PRIVATE),  # data/default is not in the input
        deployment("d", "shop", "quay.io/acme/moving"),
    )
    code, out, _ = cli("audit", "--config", config, "-f", "-", stdin=text)
    assert code == 0
    assert (
        "4 images in 3 pod specs (3 distinct) kept on their upstream by `pullSecrets: keep` (pull-secret); "
        "`pullSecrets: rewrite` would change it."
    ) in out
    assert "1 pod specs run as ServiceAccounts not in the input (data/default): decided as if they had no" in out
    # `d` runs as shop/default too: its untagged image would be kept by its pull secrets first.
    assert "moving-tag" not in out


def test_with_pull_secrets_rewritten_nothing_is_pending_and_nothing_is_unknown(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "relaxed.yaml"
    path.write_text(yaml.safe_dump({"registry": REGISTRY, "pullSecrets": "rewrite"}), encoding="utf-8")
    code, out, _ = cli("audit", "--config", str(path), "-f", "-", stdin=manifests(deployment("c", "data", PRIVATE)))
    assert code == 0
    assert "ServiceAccounts not in the input" not in out


def test_rewrite_keeps_what_the_webhook_will_keep(cli: Cli, config: str) -> None:
    text = manifests(
        deployment("app", "shop", PRIVATE, PAUSE, account="puller"),
        service_account("puller", "shop", "quay-robot"),
        deployment("lone", "data", PAUSE),
    )
    code, out, err = cli("rewrite", "--config", config, "-f", "-", stdin=text)
    assert code == 0
    rewritten = list(yaml.safe_load_all(out))
    images = [c["image"] for c in rewritten[0]["spec"]["template"]["spec"]["containers"]]
    assert images == [PRIVATE, f"{REGISTRY}/k8s/pause:3.10"]
    note = (
        "ecr-ptc-webhook rewrite: ServiceAccounts not in the input (data/default): their pods were rewritten as if "
        "they had no imagePullSecrets (pullSecrets: keep); add the ServiceAccounts to the input"
    )
    assert err.splitlines() == [note, "ecr-ptc-webhook rewrite: rewrote 2 images in 1 of 1 files"]


def test_service_accounts_pure_lookups() -> None:
    accounts = ServiceAccounts()
    for document in (
        service_account("a", "ns", "s"),
        {"kind": "ServiceAccountList", "items": [{"metadata": {"name": "b", "namespace": "ns"}}]},
        {"kind": "ServiceAccount", "metadata": {"namespace": "ns"}},  # no name: passed over
        "not an object",
    ):
        for account in service_accounts_in(document):
            accounts.add(account)
    assert len(accounts) == 2
    (runs_as_a,) = workloads(deployment("x", "ns", PAUSE, account="a"))
    (runs_as_b,) = workloads(deployment("y", "ns", PAUSE, account="b"))
    (runs_as_default,) = workloads(deployment("z", "ns", PAUSE))
    assert (accounts.pull_secrets(runs_as_a), accounts.pull_secrets(runs_as_b)) == (True, False)
    assert accounts.pull_secrets(runs_as_default) is None
    assert account_of(runs_as_default) == "default"
    own = deployment("w", "ns", PAUSE)
    own["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "mine"}]
    assert accounts.pull_secrets(next(workloads(own))) is True
