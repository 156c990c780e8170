"""Errors that the CLI reports as one line, without a stack trace."""

from __future__ import annotations


class CarbonlakeError(Exception):
    """A user-facing error: bad configuration, missing input, a broken invariant."""

    exit_code = 2  # what the command line exits with


class ConfigError(CarbonlakeError):
    """The configuration file is missing or invalid; the message names the key."""


class DeltaJarsMissingError(CarbonlakeError):
    """Spark started without Delta Lake's JVM classes."""


class InputError(CarbonlakeError):
    """A landing or reference input cannot be read (missing dataset, unreadable file)."""


class InvariantError(CarbonlakeError):
    """A run-time invariant (conservation, non-negativity, ...) does not hold."""


class MonthsClaimedError(CarbonlakeError):
    """Another live run holds some of the run's months: refused before writing anything."""

    exit_code = 3


class DerivedViewError(CarbonlakeError):
    """The accounting committed, but a derived view (forecast, target progress) failed."""

    exit_code = 4
