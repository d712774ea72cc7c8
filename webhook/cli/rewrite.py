"""``ecr-ptc-webhook rewrite``: point the images of application manifests at the cache, offline.

A thin shell over :func:`webhook.manifests.rewrite_text`. Every input is read and rewritten in memory first; only
when all of them succeeded is anything written, each file whole (temporary file, then rename). Like ``yq`` and
``kustomize``: the result goes to stdout unless ``-o`` names a file or directory or ``-i`` rewrites in place.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from webhook.audit.manifests import (
    ManifestError,
    manifest_files,
    read_manifests,
    read_text,
    rewrite_text,
    write_atomic,
)
from webhook.audit.service_accounts import ServiceAccounts, account_label, brief, service_accounts_in
from webhook.cli._options import add_config_arguments, config_from_args
from webhook.core.rules import Rules

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from webhook.audit.manifests import ManifestFile
    from webhook.core.workloads import Workload

EXIT_WOULD_CHANGE: Final = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``rewrite`` command."""
    parser = subparsers.add_parser(
        "rewrite",
        help="rewrite the images of Kubernetes manifests to the cache, offline",
        description=(
            "Rewrite image references in manifests (Pods, workloads, CronJobs, PodTemplates, Lists) as the webhook "
            "would; only the image strings change, comments and formatting stay. Writes to stdout by default."
        ),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE|DIR|-",
        help="manifests to rewrite (repeat for several); a directory is read for *.yaml, *.yml and *.json",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help=(
            "a file (one input), or a directory that mirrors the input tree (created if missing): an existing "
            "directory, a name ending in /, or where several inputs go"
        ),
    )
    target.add_argument("-i", "--in-place", action="store_true", help="rewrite the input files themselves")
    target.add_argument(
        "--check", action="store_true", help="write nothing; list what would change and exit 1 if anything would"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Rewrite every input in memory, then write them all (or report with ``--check``)."""
    rules = Rules(config_from_args(args))
    files = manifest_files(args.files)
    targets = _targets(files, args.output, in_place=args.in_place, check=args.check)
    texts = [(file, read_text(file)) for file in files]
    unknown: set[str] = set()
    pull_secrets = _pull_secrets(texts, rules, unknown)
    results = [(file, rewrite_text(text, file.name, rules, pull_secrets)) for file, text in texts]
    changed = [result for _, result in results if result.changed]
    if args.check:
        for result in changed:
            for edit in result.edits:
                change = f"{edit.decision.image} -> {edit.decision.result}"
                sys.stdout.write(f"{result.source}:{edit.line}: {change}\n")
                sys.stdout.writelines(
                    f"{result.source}:{line}: {change} (follows the anchor on line {edit.line})\n"
                    for line in edit.aliases
                )
    elif targets is None:
        sys.stdout.write(results[0][1].text)
    else:
        for file, result in results:
            target = targets[file.name]
            if target is not None and (result.changed or target != file.path):
                mode = file.path.stat().st_mode & 0o7777 if file.path is not None else None
                write_atomic(target, result.text, mode)
    if unknown:
        sys.stderr.write(
            f"ecr-ptc-webhook rewrite: ServiceAccounts not in the input ({brief(unknown)}): their pods were rewritten "
            "as if they had no imagePullSecrets (pullSecrets: keep); add the ServiceAccounts to the input\n"
        )
    edits = sum(len(result.edits) for result in changed)
    verb = "would rewrite" if args.check else "rewrote"
    sys.stderr.write(f"ecr-ptc-webhook rewrite: {verb} {edits} images in {len(changed)} of {len(files)} files\n")
    return EXIT_WOULD_CHANGE if args.check and changed else 0


def _pull_secrets(texts: list[tuple[ManifestFile, str]], rules: Rules, unknown: set[str]) -> Callable[[Workload], bool]:
    """Whether a workload's pods will pull with secrets, from the ServiceAccounts of every input, wherever they stand.

    Accounts that are not there are added to ``unknown`` (``namespace/name``) and count as having none.
    """
    accounts = ServiceAccounts()
    if rules.reads_pull_secrets:
        for file, text in texts:
            for manifest in read_manifests(text, file.name):
                for account in service_accounts_in(manifest.data, manifest.kind):
                    accounts.add(account)

    def pull_secrets(workload: Workload) -> bool:
        secrets = accounts.pull_secrets(workload)
        if secrets is None and rules.reads_pull_secrets:
            unknown.add(account_label(workload))
        return bool(secrets)

    return pull_secrets


def _targets(
    files: list[ManifestFile], output_name: str | None, *, in_place: bool, check: bool
) -> dict[str, Path | None] | None:
    """Input name -> the file to write (``None``: leave it); ``None`` altogether for stdout. Checked before reading.

    ``-o`` names a directory if it is one, if it ends in a path separator (``newdir/``), or for several inputs.
    """
    if check:
        return {}
    if in_place:
        if any(file.path is None for file in files):
            raise ManifestError("-i/--in-place cannot rewrite stdin; use -o FILE or stdout")
        return {file.name: file.path for file in files}
    single = len(files) == 1 and files[0].relative is None
    if output_name is None:
        if not single:
            raise ManifestError(f"{len(files)} input files: pass -o DIR to mirror them, or -i to rewrite in place")
        return None
    output = Path(output_name)
    directory = output.is_dir() or output_name.endswith(tuple(filter(None, (os.sep, os.altsep))))
    if single and not directory:
        return {files[0].name: output}
    targets: dict[str, Path | None] = {}
    seen: dict[Path, str] = {}
    for file in files:
        if file.path is None:
            raise ManifestError("stdin has no file name to write into the directory -o names; use -o FILE")
        target = output / (file.relative if file.relative is not None else file.path.name)
        if target in seen:
            raise ManifestError(f"{file.name} and {seen[target]} would both be written to {target}")
        seen[target] = file.name
        targets[file.name] = target
    return targets
