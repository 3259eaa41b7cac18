"""Validation of every name and value that may end up on disk or in a script."""

from __future__ import annotations

import re

from .errors import UsageError

MAX_NAME = 64
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(value: str, kind: str = "name") -> str:
    """Return `value` if it is a valid container/dataset name, else raise.

    Names are 1-64 characters of [a-z0-9][a-z0-9._-]*; this refuses `..`,
    `../x`, `/abs`, upper case and non-ASCII before anything is touched.
    """
    if not value:
        raise UsageError(f"{kind} must not be empty")
    if len(value) > MAX_NAME:
        raise UsageError(f"{kind} {value[:20]!r}… is {len(value)} characters; at most {MAX_NAME} are allowed")
    if not _NAME.match(value) or value in (".", ".."):
        raise UsageError(
            f"invalid {kind} {value!r}: use 1-{MAX_NAME} characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def parse_execution_id(value: str) -> tuple[str, int]:
    """Split `CONTAINER/N` into its parts, validating both."""
    container, sep, number = value.partition("/")
    if not sep or not number.isdigit() or not number.isascii() or int(number) < 1:
        raise UsageError(f"invalid execution {value!r}: expected CONTAINER/N, for example mnist-train/3")
    return check_name(container, "container name"), int(number)


def check_text(value: str, what: str) -> str:
    """Refuse control characters (newline, CR, NUL…) in a value that reaches a script.

    A newline in an #SBATCH line starts a new directive, and a NUL cannot
    pass through exec at all, so these are refused rather than escaped.
    """
    found = _CONTROL.search(value)
    if found:
        raise UsageError(f"{what} contains a control character ({found.group()!r}); it is not allowed")
    try:
        value.encode("utf-8")  # bytes that are not UTF-8 arrive as surrogates, which no file or ledger takes
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text ({ascii(value)}); use UTF-8") from None
    return value
