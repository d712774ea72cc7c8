"""Errors of the provisioner, one line each, naming the resource and the fix.

::

    WebhookError
    └── ProvisionError                the ECR side cannot be planned, applied or verified
        ├── LocationError             registry host not ECR, region without pull-through cache, wrong account/region
        ├── SecretError               credential secret missing, unreadable, or without username/accessToken
        ├── RoleError                 the IAM role ECR assumes for an ECR upstream of another account: missing,
        │                             in the wrong account, or set where none is needed
        ├── ConflictError             a prefix taken by another upstream or by what this tool did not create (see
        │                             --adopt), a V1 registry policy scope, a malformed registry policy
        ├── QuotaError                an ECR quota is full (50 pull-through cache rules, creation templates)
        ├── AwsError                  any other AWS failure: operation, error code and AWS's message
        └── ApplyError                an apply stopped part-way; what was done is kept, a re-run converges

The CLI prints any of them as ``ecr-ptc-webhook provision: <message>`` and exits 2.
"""

from __future__ import annotations

from webhook.exceptions import WebhookError


class ProvisionError(WebhookError):
    """The ECR side of the cache cannot be planned, applied, destroyed or verified."""


class LocationError(ProvisionError):
    """The registry host, region or account does not fit pull-through cache or the AWS credentials in use."""


class SecretError(ProvisionError):
    """A credential secret of an opt-in tier is missing, misnamed, unreadable or incomplete."""


class RoleError(ProvisionError):
    """The ``customRoleArn`` of an ECR upstream is missing (another account), misplaced or not needed."""


class ConflictError(ProvisionError):
    """Existing ECR state this tool must not overwrite: a rule or template it did not create, a V1 policy scope."""


class QuotaError(ProvisionError):
    """An ECR service quota is exhausted."""


class AwsError(ProvisionError):
    """An AWS call failed for a reason without a more specific message."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        """Record the operation, AWS's error code and message."""
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code


class ApplyError(ProvisionError):
    """An apply stopped at one action; the actions before it took effect and a re-run picks up from there."""

    def __init__(self, failed: str, done: int, cause: ProvisionError) -> None:
        """Record the action that failed, how many succeeded before it, and why."""
        super().__init__(f"{failed}: {cause} ({done} earlier change(s) were applied; fix the cause and re-run apply)")
        self.failed = failed
        self.done = done
        self.cause = cause
