"""Talking to ECR and registries at run time: live rules, verified targets, cache warm-up.

``registry_client`` (the registry HTTP API and ECR tokens), ``verify`` (does a rewritten reference resolve in the
cache), ``discovery`` (``rules: discover``, from DescribePullThroughCacheRules) and ``warm`` (fill the cache).

May import: :mod:`webhook.core` and the shared modules (``exceptions``). Must not import :mod:`webhook.serve`,
:mod:`webhook.cli`, :mod:`webhook.audit` or :mod:`webhook.provision` (``.importlinter``). boto3 and httpx are
imported only where a feature that needs them is used.
"""
