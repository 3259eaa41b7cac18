"""Errors that reach the user as one clear line and an exit code."""

from __future__ import annotations

# Exit codes shared by every command (documented in docs/cli.md).
EXIT_ERROR = 1
EXIT_USAGE = 2


class GearError(Exception):
    """An error the user can act on; the message names the problem."""

    exit_code = EXIT_ERROR


class UsageError(GearError):
    """Bad input on the command line (exit 2, like click's own usage errors)."""

    exit_code = EXIT_USAGE


class NotFound(GearError):
    """A container, execution, type or image that does not exist."""


class SiteConfigError(GearError):
    """The site configuration is missing or wrong; names the file and key."""


class SlurmError(GearError):
    """Slurm refused, failed or did not answer."""
