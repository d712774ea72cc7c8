"""The companion provisioner: create, verify and remove the ECR side of the cache from the webhook's config.

``desired``, ``plan`` and ``policy`` are pure (config in, data out); ``provisioner`` runs a plan through a
``Backend``; ``aws`` is the boto3 backend. Typical use::

    config = load_provision_config(Path("config.yaml"))  # from webhook.provision.config
    provisioner = Provisioner(AwsBackend.from_session(session(None, locate(config.webhook).region)), config)
    print(provisioner.plan().summary())

The provisioner owns the ``provision:`` section of the config file: the webhook's model carries it as opaque data,
and :mod:`webhook.provision.config` (which reads the file, imported on its own) validates it.

Part of the layering (``.importlinter``): may import :mod:`webhook.core` and the shared modules (``config``,
``exceptions``); never :mod:`webhook.serve`, :mod:`webhook.cache`, :mod:`webhook.audit` or :mod:`webhook.cli`.
Everything but ``aws`` (boto3) and ``config`` (files) is pure.
"""

from __future__ import annotations

from webhook.provision.desired import desired_state, locate
from webhook.provision.errors import (
    ApplyError,
    AwsError,
    ConflictError,
    LocationError,
    ProvisionError,
    QuotaError,
    SecretError,
)
from webhook.provision.plan import Action, Plan, plan_apply, plan_destroy
from webhook.provision.provisioner import Backend, Check, Credential, Provisioner, RuleValidation, Verification
from webhook.provision.settings import Principals, ProvisionSettings

__all__ = [
    "Action",
    "ApplyError",
    "AwsError",
    "Backend",
    "Check",
    "ConflictError",
    "Credential",
    "LocationError",
    "Plan",
    "Principals",
    "ProvisionError",
    "ProvisionSettings",
    "Provisioner",
    "QuotaError",
    "RuleValidation",
    "SecretError",
    "Verification",
    "desired_state",
    "locate",
    "plan_apply",
    "plan_destroy",
]
