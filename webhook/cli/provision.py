"""``ecr-ptc-webhook provision plan|apply|destroy|verify|values|node-policy|webhook-policy|upstream-policy``.

A thin shell over :mod:`webhook.provision`: it loads the config, builds the boto3 backend (only for the commands that
talk to AWS, so ``values``, ``node-policy`` and ``webhook-policy`` work offline and without boto3) and formats the
results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import yaml

from webhook.provision.config import load_provision_config
from webhook.provision.desired import locate, node_policy, upstream_policies, webhook_policy
from webhook.provision.errors import ProvisionError
from webhook.provision.provisioner import Provisioner
from webhook.provision.values import chart_values

if TYPE_CHECKING:
    import argparse

    from webhook.provision.plan import Action, Plan
    from webhook.provision.provisioner import Verification

EXIT_CHANGES: Final = 3
"""``plan --detailed-exitcode`` when changes are pending (2 already means an error in this CLI)."""
EXIT_FAILED_CHECKS: Final = 1
UPSTREAM_POLICY_HELP: Final = (
    "print the IAM role ECR needs for each ECR upstream of another account (trust, permissions) and the statement "
    "the upstream's owner adds; offline"
)
_PAST: Final = {"create": "created", "update": "updated", "delete": "deleted", "no-op": "unchanged"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``provision`` command and its subcommands."""
    parser = subparsers.add_parser(
        "provision",
        help="plan, apply, destroy or verify the ECR side of the cache",
        description="Create and verify the ECR pull-through cache rules, repository creation templates and registry "
        "policy that the config's tiers need. Safe to run again and again. See docs/provision.md.",
    )
    actions = parser.add_subparsers(dest="provision_command", required=True, metavar="ACTION")
    commands = {
        "plan": ("show what apply would change; change nothing", _plan),
        "apply": ("create or update what the config needs; print the node-role policy", _apply),
        "destroy": ("delete what this tool created (needs --yes)", _destroy),
        "verify": ("check secrets, drift and ECR's rule validation; exit 1 on any failure", _verify),
        "values": ("print the chart values (every webhook key of the config) for helm -f; offline", _values),
        "node-policy": ("print the IAM identity policy node roles need; offline", _node_policy),
        "webhook-policy": (
            "print the IAM identity policy of the webhook's own role (rules: discover, verify: true); offline",
            _webhook_policy,
        ),
        "upstream-policy": (UPSTREAM_POLICY_HELP, _upstream_policy),
    }
    offline = {"values", "node-policy", "webhook-policy", "upstream-policy"}
    for name, (summary, run) in commands.items():
        command = actions.add_parser(name, help=summary, description=summary)
        command.add_argument("--config", type=Path, required=True, help="the webhook's YAML config with `provision:`")
        if name != "values":
            command.add_argument("--region", help="must match the registry host's region (default: from the host)")
        if name not in offline:
            command.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or the usual credential chain)")
        command.set_defaults(run=run)
    plan_parser = actions.choices["plan"]
    plan_parser.add_argument(
        "--detailed-exitcode", action="store_true", help=f"exit {EXIT_CHANGES} when changes are pending, 0 when none"
    )
    actions.choices["destroy"].add_argument("--yes", action="store_true", help="really delete; else only show what")
    for name in ("plan", "apply"):
        actions.choices[name].add_argument(
            "--adopt",
            action="store_true",
            help="manage templates and rules on the config's prefixes that this tool did not create (destroy then "
            "leaves them in place); without it they are a conflict",
        )


def _provisioner(args: argparse.Namespace) -> Provisioner:
    config = load_provision_config(args.config)
    location = locate(config.webhook, args.region)
    try:
        from webhook.provision.aws import AwsBackend, session  # noqa: PLC0415 - boto3 is the optional `aws` extra
    except ImportError as error:
        raise ProvisionError(f"needs boto3 ({error}); install it with: pip install 'ecr-ptc-webhook[aws]'") from None
    backend = AwsBackend.from_session(session(args.profile, location.region))
    return Provisioner(backend, config, args.region)


def _plan(args: argparse.Namespace) -> int:
    provisioner = _provisioner(args)
    plan = provisioner.plan(adopt=args.adopt)
    _write(format_plan(plan))
    _write_policies(provisioner)
    return EXIT_CHANGES if args.detailed_exitcode and plan.changes else 0


def _apply(args: argparse.Namespace) -> int:
    provisioner = _provisioner(args)
    plan = provisioner.apply(on_action=lambda action: _write([format_done(action)]), adopt=args.adopt)
    _write([*(f"! {warning}" for warning in plan.warnings), format_apply_summary(plan)])
    _write_policies(provisioner)
    return 0


def _write_policies(provisioner: Provisioner) -> None:
    _write(format_node_policy(provisioner.node_policy()))
    policy = provisioner.webhook_policy()
    if policy is not None:
        _write(format_webhook_policy(policy))
    upstreams = provisioner.upstream_policies()
    if upstreams:
        _write(format_upstream_policies(upstreams))


def _destroy(args: argparse.Namespace) -> int:
    provisioner = _provisioner(args)
    if not args.yes:
        plan = provisioner.plan_destroy()
        _write(format_plan(plan))
        _write(["Nothing deleted: re-run with --yes to delete the above." if plan.changes else "Nothing to delete."])
        return 0
    plan = provisioner.destroy(on_action=lambda action: _write([format_done(action)]))
    _write([*(f"! {warning}" for warning in plan.warnings), format_apply_summary(plan)])
    return 0


def _verify(args: argparse.Namespace) -> int:
    verification = _provisioner(args).verify()
    _write(format_verification(verification))
    return 0 if verification.ok else EXIT_FAILED_CHECKS


def _values(args: argparse.Namespace) -> int:
    config = load_provision_config(args.config)
    sys.stdout.write(yaml.safe_dump(chart_values(config.webhook), sort_keys=False))
    return 0


def _node_policy(args: argparse.Namespace) -> int:
    config = load_provision_config(args.config)
    policy = node_policy(config.webhook, locate(config.webhook, args.region))
    sys.stdout.write(json.dumps(policy, indent=2) + "\n")
    return 0


def _webhook_policy(args: argparse.Namespace) -> int:
    config = load_provision_config(args.config)
    policy = webhook_policy(config.webhook, locate(config.webhook, args.region))
    if policy is None:
        sys.stderr.write(
            "ecr-ptc-webhook provision: with `rules: static` and `verify: false` the webhook calls no AWS API; its "
            "ServiceAccount needs no IAM policy\n"
        )
        return 0
    sys.stdout.write(json.dumps(policy, indent=2) + "\n")
    return 0


def _upstream_policy(args: argparse.Namespace) -> int:
    config = load_provision_config(args.config)
    policies = upstream_policies(config.webhook, locate(config.webhook, args.region))
    if not policies:
        sys.stderr.write(
            "ecr-ptc-webhook provision: no enabled ECR upstream is in another account; ECR needs no role for them\n"
        )
        return 0
    sys.stdout.write(json.dumps(policies, indent=2) + "\n")
    return 0


def format_plan(plan: Plan) -> list[str]:
    """One line per action, its field changes indented under it, warnings, then the summary."""
    lines: list[str] = []
    for action in plan.actions:
        lines.append(action.describe())
        lines.extend(f"    {change}" for change in action.changes)
    lines.extend(f"! {warning}" for warning in plan.warnings)
    lines.append(plan.summary())
    return lines


def format_done(action: Action) -> str:
    """``+ created pull-through cache rule quay (quay.io -> quay/)``."""
    return f"{action.describe()[0]} {_PAST[action.kind]} {action.resource.describe()}"


def format_apply_summary(plan: Plan) -> str:
    """``Apply complete: 2 created, 0 updated, 0 deleted, 3 unchanged.``."""
    counts = {kind: sum(1 for action in plan.actions if action.kind == kind) for kind in _PAST}
    return "Apply complete: " + ", ".join(f"{counts[kind]} {_PAST[kind]}" for kind in _PAST) + "."


def format_node_policy(policy: dict[str, object]) -> list[str]:
    """A heading and the node-role identity policy JSON."""
    return [
        "",
        "Node roles in the cluster accounts need this identity policy (also: `provision node-policy`):",
        json.dumps(policy, indent=2),
    ]


def format_webhook_policy(policy: dict[str, object]) -> list[str]:
    """A heading and the identity policy JSON of the webhook's ServiceAccount role."""
    return [
        "",
        "The webhook's ServiceAccount role needs this identity policy (also: `provision webhook-policy`):",
        json.dumps(policy, indent=2),
    ]


def format_upstream_policies(policies: list[dict[str, object]]) -> list[str]:
    """A heading and, per cross-account ECR upstream, the role's policies and the upstream owner's statement."""
    return [
        "",
        (
            "ECR pulls from ECR upstreams of other accounts through an IAM role in this account (its ARN goes in "
            "`provision.upstreamRoles`); each upstream's owner grants this account a pull (also: `provision "
            "upstream-policy`):"
        ),
        json.dumps(policies, indent=2),
    ]


def format_verification(verification: Verification) -> list[str]:
    """``ok   subject: detail`` / ``FAIL subject: detail`` per check, then a verdict."""
    lines = []
    for check in verification.checks:
        detail = f": {check.detail}" if check.detail else ""
        lines.append(f"{'ok  ' if check.ok else 'FAIL'} {check.subject}{detail}")
    failed = sum(1 for check in verification.checks if not check.ok)
    lines.append("All checks passed." if not failed else f"{failed} check(s) failed.")
    return lines


def _write(lines: list[str]) -> None:
    sys.stdout.write("".join(f"{line}\n" for line in lines))
