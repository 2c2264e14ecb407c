"""Errors raised by kumo. Expected outcomes ("cannot fit", "over quota") are values, not errors.

Hierarchy::

    KumoError
     ├── ValidationError            bad input to a constructor; says what and where
     │    ├── InvalidValueError      a field out of range (negative GPUs, empty name, ...)
     │    ├── UnknownReferenceError  a name that does not exist (flavor, queue, project, node)
     │    ├── DuplicateError         the same name twice
     │    ├── QuotaCycleError        cohorts whose parents form a cycle
     │    └── UnsatisfiableJobError  a gang that no allowed part of the cluster could ever hold
     ├── ConfigError                a scheduler profile that is not valid
     └── StateError                 an operation that does not match the snapshot's state
          └── StaleDecisionsError    decisions applied to a snapshot that changed since
"""

from __future__ import annotations


class KumoError(Exception):
    """Base class of every error kumo raises on purpose."""


class ValidationError(KumoError, ValueError):
    """Bad input. The message names the object, the field and what was expected."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class InvalidValueError(ValidationError):
    """A field holds a value outside what it accepts."""


class UnknownReferenceError(ValidationError):
    """An object names another object (flavor, queue, project, cohort, node) that does not exist."""


class DuplicateError(ValidationError):
    """Two objects of one kind share a name."""


class QuotaCycleError(ValidationError):
    """Cohort parents form a cycle, so quota could be lent to itself."""


class UnsatisfiableJobError(ValidationError):
    """A job's gang is larger than any part of the cluster it is allowed to use."""


class ConfigError(KumoError, ValueError):
    """A scheduler profile (policy names, parameters) is not valid."""


class StateError(KumoError):
    """An operation does not match the snapshot's current state (unknown job, job not running)."""


class StaleDecisionsError(StateError):
    """Decisions were computed on a snapshot that has changed since; schedule again."""
