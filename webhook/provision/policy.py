"""IAM policy documents: our registry policy statements, merging them with others', and the node-role policy.

Ownership of registry policy statements is by ``Sid``: ours start with :data:`STATEMENT_SID_PREFIX`. Statements of
anyone else are kept exactly (same keys, order and values) and in their place; only ours are replaced.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from webhook.provision.errors import ConflictError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from webhook.provision.resources import Location
    from webhook.provision.settings import Principals

POLICY_VERSION: Final = "2012-10-17"
STATEMENT_SID_PREFIX: Final = "EcrPtcWebhook"
"""Registry policy statements whose ``Sid`` starts with this are ours to replace and delete."""
PARTITION: Final = "aws"
"""Pull-through cache exists only in the commercial partition (see ``UNSUPPORTED_REGION_PREFIXES``)."""
CACHE_ACTIONS: Final[tuple[str, ...]] = (
    "ecr:BatchImportUpstreamImage",
    "ecr:CreateRepository",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
)
"""What pulling through the cache takes: import from upstream, create the repository, then an ordinary pull."""
V1_SCOPE_ACTIONS: Final = frozenset({"ecr:ReplicateImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"})
"""All a registry policy may grant under the V1 registry policy scope; ECR refuses other actions in it."""
WEBHOOK_VERIFY_ACTIONS: Final[tuple[str, ...]] = (
    "ecr:BatchGetImage",
    "ecr:BatchImportUpstreamImage",
    "ecr:CreateRepository",
)
"""``verify: true``: a HEAD of a manifest through the cache reads it and, when not cached yet, imports it."""

PULL_THROUGH_CACHE_SERVICE: Final = "pullthroughcache.ecr.amazonaws.com"
"""The service principal that assumes a pull-through cache rule's ``customRoleArn``."""
UPSTREAM_ROLE_ACTIONS: Final[tuple[str, ...]] = (
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchImportUpstreamImage",
    "ecr:GetImageCopyStatus",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
)
"""What ECR does with the role of a cross-account ECR upstream: read the upstream, write the cache (AWS's user guide,
"Setting up permissions for cross-account ECR to ECR PTC"; there on ``*``, here on the two registries' repositories)."""
UPSTREAM_GRANT_ACTIONS: Final[tuple[str, ...]] = (
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
)
"""What the upstream registry's owner grants the cache's account: an ordinary pull."""


def repository_arns(location: Location, prefixes: Iterable[str]) -> list[str]:
    """ARNs of every repository under the cache's prefixes (``.../repository/quay/*``)."""
    return [f"arn:{PARTITION}:ecr:{location.region}:{location.account}:repository/{prefix}/*" for prefix in prefixes]


def registry_statements(
    location: Location, prefixes: Sequence[str], principals: Principals
) -> tuple[dict[str, Any], ...]:
    """Our registry policy statements: the allowed accounts, and the allowed organization, may pull through."""
    if not prefixes:
        return ()
    resources = repository_arns(location, prefixes)
    statements: list[dict[str, Any]] = []
    if principals.accounts:
        statements.append(
            {
                "Sid": f"{STATEMENT_SID_PREFIX}Accounts",
                "Effect": "Allow",
                "Principal": {"AWS": [f"arn:{PARTITION}:iam::{account}:root" for account in principals.accounts]},
                "Action": list(CACHE_ACTIONS),
                "Resource": resources,
            }
        )
    if principals.organization_id:
        statements.append(
            {
                "Sid": f"{STATEMENT_SID_PREFIX}Organization",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": list(CACHE_ACTIONS),
                "Resource": resources,
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": principals.organization_id}},
            }
        )
    return tuple(statements)


def login_statement() -> dict[str, Any]:
    """``ecr:GetAuthorizationToken``, which has no resource-level permissions: every ECR client logs in with it."""
    return {
        "Sid": f"{STATEMENT_SID_PREFIX}Login",
        "Effect": "Allow",
        "Action": "ecr:GetAuthorizationToken",
        "Resource": "*",
    }


def node_role_policy(location: Location, prefixes: Sequence[str]) -> dict[str, Any]:
    """The identity policy that node roles (in any allowed account) need to pull through the cache."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            login_statement(),
            {
                "Sid": f"{STATEMENT_SID_PREFIX}PullThroughCache",
                "Effect": "Allow",
                "Action": list(CACHE_ACTIONS),
                "Resource": repository_arns(location, prefixes),
            },
        ],
    }


def upstream_role_trust() -> dict[str, Any]:
    """The trust policy of the role ECR assumes to pull from an ECR upstream of another account."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": f"{STATEMENT_SID_PREFIX}PullThroughCache",
                "Effect": "Allow",
                "Principal": {"Service": PULL_THROUGH_CACHE_SERVICE},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def upstream_role_permissions(location: Location, upstream: Location, prefix: str) -> dict[str, Any]:
    """The identity policy of that role: log in, read the upstream's repositories, write the tier's cache ones."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            login_statement(),
            {
                "Sid": f"{STATEMENT_SID_PREFIX}UpstreamPull",
                "Effect": "Allow",
                "Action": list(UPSTREAM_ROLE_ACTIONS),
                "Resource": [
                    f"arn:{PARTITION}:ecr:{upstream.region}:{upstream.account}:repository/*",
                    *repository_arns(location, [prefix]),
                ],
            },
        ],
    }


def upstream_registry_statement(location: Location, upstream: Location) -> dict[str, Any]:
    """The statement the upstream registry's owner adds (registry policy, V2 scope) so the cache's account may pull.

    Its ``Sid`` is not one of ours: should this tool provision the upstream registry too, it must keep the statement.
    """
    return {
        "Sid": f"PullThroughCacheTo{location.account}",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{PARTITION}:iam::{location.account}:root"},
        "Action": list(UPSTREAM_GRANT_ACTIONS),
        "Resource": f"arn:{PARTITION}:ecr:{upstream.region}:{upstream.account}:repository/*",
    }


def webhook_role_policy(
    location: Location, prefixes: Sequence[str], *, discover: bool, verify: bool
) -> dict[str, Any] | None:
    """The identity policy of the webhook's own role (``rules: discover``, ``verify: true``); ``None``: no AWS calls."""
    statements: list[dict[str, Any]] = []
    if discover:
        # DescribePullThroughCacheRules has no resource-level permissions: "*" is the only Resource IAM accepts.
        statements.append(
            {
                "Sid": f"{STATEMENT_SID_PREFIX}DiscoverRules",
                "Effect": "Allow",
                "Action": "ecr:DescribePullThroughCacheRules",
                "Resource": "*",
            }
        )
    if verify:
        statements.append(login_statement())
        statements.append(
            {
                "Sid": f"{STATEMENT_SID_PREFIX}Verify",
                "Effect": "Allow",
                "Action": list(WEBHOOK_VERIFY_ACTIONS),
                "Resource": repository_arns(location, prefixes),
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements} if statements else None


def policy_scope_problem(scope: str, location: Location) -> str | None:
    """Why our registry policy statements cannot work under the registry policy ``scope``; ``None`` when they can."""
    if scope != "V1":
        return None
    missing = ", ".join(action for action in CACHE_ACTIONS if action not in V1_SCOPE_ACTIONS)
    return (
        "the registry's policy scope (account setting REGISTRY_POLICY_SCOPE) is V1, which allows only "
        f"{', '.join(sorted(V1_SCOPE_ACTIONS))} in a registry policy; the statements for `provision.principals` also "
        f"grant {missing}. Switch to V2 with `aws ecr put-account-setting --name REGISTRY_POLICY_SCOPE --value V2 "
        f"--region {location.region}` (V2 enforces every statement of the registry policy on every ECR action: "
        "review the other statements first), or drop `provision.principals`"
    )


def is_ours(statement: object) -> bool:
    """Whether a registry policy statement is one this tool wrote (by its ``Sid``)."""
    return isinstance(statement, dict) and str(statement.get("Sid", "")).startswith(STATEMENT_SID_PREFIX)


def parse_policy(text: str | None) -> dict[str, Any] | None:
    """The registry policy as a document with a ``Statement`` list (a lone statement object becomes a list)."""
    if text is None:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConflictError(
            f"the registry permissions policy is not valid JSON ({error}); fix it by hand first"
        ) from None
    if not isinstance(document, dict):
        raise ConflictError("the registry permissions policy is not a JSON object; fix it by hand first")
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise ConflictError("the registry permissions policy's `Statement` is not a list; fix it by hand first")
    return {**document, "Statement": statements}


def our_statements(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Our statements in a parsed policy, in order."""
    return [statement for statement in (document or {}).get("Statement", []) if is_ours(statement)]


def merge_policy(observed: str | None, ours: Sequence[dict[str, Any]]) -> str | None:
    """The registry policy with our statements replaced by ``ours`` and everyone else's kept; ``None``: no policy.

    Others' statements keep their position; ours go where our first one was, or at the end.
    """
    document = parse_policy(observed) or {"Version": POLICY_VERSION, "Statement": []}
    merged: list[Any] = []
    placed = False
    for statement in document["Statement"]:
        if is_ours(statement):
            if not placed:
                merged.extend(ours)
                placed = True
            continue
        merged.append(statement)
    if not placed:
        merged.extend(ours)
    if not merged:
        return None
    return json.dumps({**document, "Statement": merged}, indent=2)
