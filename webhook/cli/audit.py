"""``ecr-ptc-webhook audit``: what the webhook would do to a cluster's or to manifests' images, before enabling it.

A thin shell: :mod:`webhook.audit.manifests` or :mod:`webhook.audit.cluster` read pod specs,
:mod:`webhook.audit.report` decides and adds up. Nothing is changed, in the cluster or on disk.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
from typing import IO, TYPE_CHECKING, Final

from webhook.audit.manifests import manifest_files, open_manifests
from webhook.audit.report import CHART_EXCLUDED_NAMESPACES, FIELDS, Report, format_table, not_sent_reason, occurrences
from webhook.audit.service_accounts import ServiceAccounts, account_label, service_accounts_in
from webhook.cli._options import add_config_arguments, config_from_args
from webhook.core.rules import Rules
from webhook.core.workloads import workloads
from webhook.exceptions import WebhookError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Sequence

    from webhook.audit.report import NotSent, Occurrence
    from webhook.core.workloads import Workload

EXIT_FAILED_CHECK: Final = 1
SPOOL_IN_MEMORY: Final = 16 * 1024 * 1024
"""json/csv lines kept in memory before spilling to a temporary file; printed only once every input has read well."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` command."""
    parser = subparsers.add_parser(
        "audit",
        help="report what the webhook would do to a cluster's or to manifests' images",
        description=(
            "Report the decision the webhook would take for every image of a live cluster (read only) or of "
            "manifests: files, directories, or - for stdin (kubectl get -o json|yaml, helm template output)."
        ),
    )
    add_config_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cluster", action="store_true", help="read the cluster of the kubeconfig (or in-cluster)")
    source.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        metavar="FILE|DIR|-",
        help="manifests to read (repeat for several); a directory is read for *.yaml, *.yml and *.json",
    )
    cluster = parser.add_argument_group("with --cluster")
    cluster.add_argument(
        "--kubeconfig",
        help=(
            "kubeconfig file, which must exist, as must KUBECONFIG's (default: KUBECONFIG, then ~/.kube/config, "
            "then the pod's service account)"
        ),
    )
    cluster.add_argument("--context", help="kubeconfig context (default: the current one)")
    cluster.add_argument("-n", "--namespace", help="one namespace (default: all)")
    cluster.add_argument(
        "--exclude-namespace",
        dest="excluded_namespaces",
        action="append",
        default=[],
        metavar="NS",
        help=(
            "a namespace the webhook is never sent pods from (repeat for several): give the chart's release "
            f"namespace and its webhook.excludedNamespaces; {' and '.join(sorted(CHART_EXCLUDED_NAMESPACES))} "
            "always are. Their images, and mirror pods', are reported as namespace-excluded or mirror-pod"
        ),
    )
    parser.add_argument(
        "--output",
        choices=["table", "json", "csv"],
        default="table",
        help="table: grouped by registry and tier; json: one object per line per image occurrence; csv: the same",
    )
    parser.add_argument(
        "--fail-on",
        choices=["uncovered", "tier-disabled"],
        help=(
            "uncovered: exit 1 if any image is left on its upstream without a choice of yours (tier-disabled, "
            "no-rule, upstream-unsupported, name-too-long, invalid-reference); exempt images never fail: on AWS "
            "(eks-addon-registry, ecr-registry, public-ecr) or left out by a choice (pod-opted-out, excluded, "
            "not-included, pull-secret, moving-tag, digest-pinned, namespace-excluded, mirror-pod). tier-disabled: "
            "exit 1 only for images a tier that is not enabled would cover"
        ),
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Decide every image of every pod spec, print the report, and apply ``--fail-on``."""
    if not args.cluster and (args.context or args.namespace or args.kubeconfig or args.excluded_namespaces):
        raise WebhookError("--kubeconfig, --context, --namespace and --exclude-namespace apply to --cluster only")
    config = config_from_args(args)
    rules = Rules(config)
    report = Report()
    accounts = ServiceAccounts()
    pending: list[tuple[Workload, str | None, NotSent | None]] = []
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, mode="w+", encoding="utf-8", newline="") as spool:
        write = _writer(args.output, spool)

        def decide(workload: Workload, source: str | None, not_sent: NotSent | None, *, secrets: bool | None) -> None:
            pod = list(occurrences(workload, rules, source, not_sent=not_sent, pull_secrets=bool(secrets)))
            report.add(pod)
            write(pod)

        for workload, source, not_sent in _workloads(args, accounts):
            secrets = accounts.pull_secrets(workload)
            if secrets is None and rules.reads_pull_secrets:
                # Its ServiceAccount may still come later in the input (or not exist): decide at the end.
                pending.append((workload, source, not_sent))
                continue
            decide(workload, source, not_sent, secrets=secrets)
        for workload, source, not_sent in pending:
            secrets = accounts.pull_secrets(workload)
            if secrets is None:
                report.unknown_service_accounts[account_label(workload)] += 1
            decide(workload, source, not_sent, secrets=secrets)
        if args.output == "table":
            sys.stdout.write(format_table(report, config.known_tiers))
        else:
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout)
    failing = {"uncovered": report.uncovered, "tier-disabled": report.tier_disabled}.get(args.fail_on or "", 0)
    if failing:
        sys.stderr.write(f"ecr-ptc-webhook audit: {failing} image occurrences are {args.fail_on} (--fail-on)\n")
        return EXIT_FAILED_CHECK
    return 0


def _workloads(
    args: argparse.Namespace, accounts: ServiceAccounts
) -> Iterator[tuple[Workload, str | None, NotSent | None]]:
    """Pod specs, where they were read (``file:line``; ``None`` for the cluster), and why the webhook is not sent them.

    Only a cluster's pods are classified as not sent (excluded namespaces, mirror pods): files are reported as given.
    ServiceAccounts are added to ``accounts`` as they are read: all of a cluster's first, a manifest's in its order.
    """
    if args.cluster:
        try:
            from webhook.audit.cluster import (  # noqa: PLC0415 - the kubernetes client only when used
                connect,
                read_cluster,
                read_service_accounts,
            )
        except ImportError:
            raise WebhookError(
                "--cluster needs the kubernetes client: pip install 'ecr-ptc-webhook[cluster]'"
            ) from None
        excluded = CHART_EXCLUDED_NAMESPACES | set(args.excluded_namespaces)
        client = connect(args.context, args.kubeconfig)
        with client:
            for account in read_service_accounts(client, args.namespace):
                accounts.add(account)
            for workload in read_cluster(client, args.namespace):
                yield workload, None, not_sent_reason(workload, excluded)
        return
    for file in manifest_files(args.files):
        for manifest in open_manifests(file):
            for account in service_accounts_in(manifest.data, manifest.kind):
                accounts.add(account)
            for workload in workloads(manifest.data, (), manifest.kind):
                yield workload, manifest.location, None


def _writer(output: str, stream: IO[str]) -> Callable[[Sequence[Occurrence]], None]:
    """A function writing one pod's occurrences in the ``--output`` format (nothing for the table)."""
    if output == "json":

        def write_json(pod: Sequence[Occurrence]) -> None:
            stream.writelines(json.dumps(occurrence.as_dict()) + "\n" for occurrence in pod)

        return write_json
    if output == "csv":
        writer = csv.DictWriter(stream, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()

        def write_csv(pod: Sequence[Occurrence]) -> None:
            writer.writerows(occurrence.as_dict() for occurrence in pod)

        return write_csv
    return lambda _pod: None
