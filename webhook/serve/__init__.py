"""The admission service: the ASGI app, the server over TLS, certificate rotation, metrics and decision logs.

``app`` (routes; a lean path for ``/mutate`` and ``/audit``), ``server`` (uvicorn, overload, linger and drain),
``tls`` (the certificate source and its reload), ``metrics``, ``decision_log`` and ``deadlines``.

May import: :mod:`webhook.core`, :mod:`webhook.cache` (live rules and verified targets, loaded only when enabled) and
the shared modules (``config``, ``exceptions``, ``logs``). Must not import :mod:`webhook.cli`, :mod:`webhook.audit`
or :mod:`webhook.provision` (``.importlinter``).
"""
