"""The exceptions this package raises on purpose, in one hierarchy.

::

    WebhookError                      base of everything below
    ├── ConfigError (ValueError)      config file, env or flags unusable; message names the key and the fix
    ├── InvalidReferenceError         an image reference the runtime would reject (also a ValueError)
    ├── AdmissionError                an HTTP request that is not a usable AdmissionReview (carries the 4xx status)
    └── CertificateError              a certificate/key pair that cannot serve (missing, mismatched, unreadable)

Modules added later (provisioning, audit, warm-up) derive their errors from :class:`WebhookError` too, so the CLI
turns any of them into one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Base class of the errors this package raises on purpose."""


class ConfigError(WebhookError, ValueError):
    """The configuration is unusable; the message names the key and the fix."""


class InvalidReferenceError(WebhookError, ValueError):
    """A string is not an image reference the container runtime would accept."""

    def __init__(self, reference: str, why: str) -> None:
        """Record the offending reference and a one-line reason."""
        super().__init__(f"invalid image reference {reference!r}: {why}")
        self.reference = reference
        self.why = why


class AdmissionError(WebhookError):
    """An HTTP request that is not a usable AdmissionReview; ``status`` is the 4xx to answer with."""

    def __init__(self, status: int, message: str) -> None:
        """Record the HTTP status and the message the client sees."""
        super().__init__(message)
        self.status = status
        self.message = message


class CertificateError(WebhookError):
    """A certificate and key that cannot serve TLS."""
