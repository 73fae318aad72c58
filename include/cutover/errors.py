"""The error hierarchy: say whether a retry can help.

Messages name tables, batches, counts and legacy ids, never patient values.
"""

from __future__ import annotations


class CutoverError(Exception):
    """Base of every error Cutover raises on purpose."""


class TerminalError(CutoverError):
    """Bad data, a broken contract or a refused precondition: retrying cannot help."""


class TransientError(CutoverError):
    """A network, database or storage hiccup: Airflow may retry the task."""


class ConfigError(TerminalError):
    """A connection or setting is missing or malformed."""


class IntegrityError(TerminalError):
    """A checksum, count or manifest does not match what was expected."""


class PolicyError(TerminalError):
    """The run broke a policy of thresholds.yaml (e.g. too many rejects in a table)."""
