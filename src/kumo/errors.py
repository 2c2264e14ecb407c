"""kumo's error hierarchy, shared by every layer (re-exported from :mod:`kumo.core.errors`)."""

from kumo.core.errors import (
    ConfigError,
    DuplicateError,
    InvalidValueError,
    KumoError,
    QuotaCycleError,
    StaleDecisionsError,
    StateError,
    UnknownReferenceError,
    UnsatisfiableJobError,
    ValidationError,
)

__all__ = [
    "ConfigError",
    "DuplicateError",
    "InvalidValueError",
    "KumoError",
    "QuotaCycleError",
    "StaleDecisionsError",
    "StateError",
    "UnknownReferenceError",
    "UnsatisfiableJobError",
    "ValidationError",
]
