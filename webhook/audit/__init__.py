"""Reading clusters and manifests: the coverage report, and offline rewriting of manifests.

``report`` (pure: decisions over workloads -> counts and occurrences), ``manifests`` (streaming YAML/JSON reading,
byte-preserving rewrite) and ``cluster`` (live listing with the kubernetes client, for ``audit --cluster``).

May import: :mod:`webhook.core` and the shared modules (``exceptions``). Must not import :mod:`webhook.serve`,
:mod:`webhook.cache`, :mod:`webhook.provision` or :mod:`webhook.cli` (``.importlinter``); ``report`` imports no I/O
library at all.
"""
