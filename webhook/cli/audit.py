"""``ecr-ptc-webhook audit``: what the webhook would do to a cluster's or to manifests' images, before enabling it.

A thin shell: :mod:`webhook.manifests` or :mod:`webhook.cluster` read pod specs, :mod:`webhook.audit` decides and
adds up. Nothing is changed, in the cluster or on disk.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
from typing import IO, TYPE_CHECKING, Final

from webhook.audit import FIELDS, Report, format_table, occurrences
from webhook.cli._options import add_config_arguments, config_from_args
from webhook.exceptions import WebhookError
from webhook.manifests import manifest_files, open_manifests
from webhook.rules import Rules
from webhook.workloads import workloads

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Sequence

    from webhook.audit import Occurrence
    from webhook.workloads import Workload

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
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
    cluster.add_argument("--context", help="kubeconfig context (default: the current one)")
    cluster.add_argument("-n", "--namespace", help="one namespace (default: all)")
    parser.add_argument(
        "--output",
        choices=["table", "json", "csv"],
        default="table",
        help="table: grouped by registry and tier; json: one object per line per image occurrence; csv: the same",
    )
    parser.add_argument(
        "--fail-on",
        choices=["uncovered", "tier-disabled"],
        help="exit 1 if any image is uncovered (pulls from outside AWS and the cache), or one a tier would cover",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Decide every image of every pod spec, print the report, and apply ``--fail-on``."""
    if not args.cluster and (args.context or args.namespace or args.kubeconfig):
        raise WebhookError("--kubeconfig, --context and --namespace apply to --cluster only")
    rules = Rules(config_from_args(args))
    report = Report()
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, mode="w+", encoding="utf-8", newline="") as spool:
        write = _writer(args.output, spool)
        for workload, source in _workloads(args):
            pod = list(occurrences(workload, rules, source))
            report.add(pod)
            write(pod)
        if args.output == "table":
            sys.stdout.write(format_table(report))
        else:
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout)
    failing = {"uncovered": report.uncovered, "tier-disabled": report.tier_disabled}.get(args.fail_on or "", 0)
    if failing:
        sys.stderr.write(f"ecr-ptc-webhook audit: {failing} image occurrences are {args.fail_on} (--fail-on)\n")
        return EXIT_FAILED_CHECK
    return 0


def _workloads(args: argparse.Namespace) -> Iterator[tuple[Workload, str | None]]:
    """Pod specs with where they were read (``file:line``; ``None`` for the cluster)."""
    if args.cluster:
        try:
            from webhook.cluster import connect, read_cluster  # noqa: PLC0415 - the kubernetes client only when used
        except ImportError:
            raise WebhookError(
                "--cluster needs the kubernetes client: pip install 'ecr-ptc-webhook[cluster]'"
            ) from None
        client = connect(args.context, args.kubeconfig)
        with client:
            yield from ((workload, None) for workload in read_cluster(client, args.namespace))
        return
    for file in manifest_files(args.files):
        for manifest in open_manifests(file):
            for workload in workloads(manifest.data, (), manifest.kind):
                yield workload, manifest.location


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
