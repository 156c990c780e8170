"""Errors that the CLI reports as one line, without a stack trace."""

from __future__ import annotations


class CarbonlakeError(Exception):
    """A user-facing error: bad configuration, missing input, a broken invariant."""


class ConfigError(CarbonlakeError):
    """The configuration file is missing or invalid; the message names the key."""


class DeltaJarsMissingError(CarbonlakeError):
    """Spark started without Delta Lake's JVM classes."""


class InputError(CarbonlakeError):
    """A landing or reference input cannot be read (missing dataset, unreadable file)."""


class InvariantError(CarbonlakeError):
    """A run-time invariant (conservation, non-negativity, ...) does not hold."""
