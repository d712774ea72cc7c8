"""ecr-ptc-webhook: route Pod images through an AWS ECR pull-through cache.

One folder per part, dependencies pointing one way (``.importlinter`` enforces it, per part)::

    cli         the commands, each a thin shell over a part                       (imports any part)
    serve       the admission service: app, server, TLS, metrics, decision logs    (over cache and core)
    cache       ECR and registries at run time: discovery, verify, warm            (over core)
    audit       clusters and manifests: coverage report, offline rewrite           (over core)
    provision   the ECR side: a pure planner under a boto3 adapter                 (over core)
    core        references, rules, patches, admission: pure                        (imports no other part)

``config`` (loading), ``certs``, ``exceptions`` and ``logs`` are shared by several parts.
"""

__version__ = "0.1.0"
