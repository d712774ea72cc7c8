"""ecr-ptc-webhook: route Pod images through an AWS ECR pull-through cache.

The pure core (``reference``, ``registries``, ``rules``, ``patch``, ``admission``) decides; the edges (``app``,
``server``, ``tls``, ``certs``, ``cli``) do I/O. ``.importlinter`` keeps the core free of FastAPI, Kubernetes and AWS.
"""

__version__ = "0.1.0"
