"""The admission service: the connection layer over TLS, the app, certificate rotation, metrics and decision logs.

``connection`` (HTTP/1.1 on uvloop + httptools: per-connection bounds, one write per answer), ``server`` (listening,
overload, linger, drain, signals), ``app`` (routes; the admission paths answered directly), ``sparse`` (the review
decode), ``tls`` (the certificate source and its reload), ``metrics``, ``decision_log``, ``log_writer`` (stderr from
a thread), ``allocator`` (memory given back after bursts) and ``deadlines``.

May import: :mod:`webhook.core`, :mod:`webhook.cache` (live rules and verified targets, loaded only when enabled) and
the shared modules (``config``, ``exceptions``, ``logs``). Must not import :mod:`webhook.cli`, :mod:`webhook.audit`
or :mod:`webhook.provision` (``.importlinter``).
"""
