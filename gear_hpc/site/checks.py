"""The checks of site configuration values: each takes a YAML value, returns it
converted, or raises ValueError/TypeError with what is allowed (site/loading.py
adds the file and the key)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..base.errors import UsageError
from ..base.names import check_email

SLURM_WORD = re.compile(r"[A-Za-z0-9_.+-]+\Z")  # partition, qos, account, gres type
MEMORY = re.compile(r"[0-9]+[KMGT]?\Z")
# Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
TIME = re.compile(r"([0-9]+-)?[0-9]+(:[0-9]+){0,2}\Z")
CONSTRAINT = re.compile(r"[A-Za-z0-9_.&|()\[\]*,-]+\Z")
TYPE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")
BYTE_SIZE = re.compile(r"([0-9]+)([KMGT]?)\Z")


def whole_number(low: int, high: int | None, what: str) -> Callable[[Any], int]:
    """A check for an integer (never a bool) from `low` to `high` (None: no upper bound);
    `what` ends the message "VALUE must be …"."""
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            raise ValueError(f"{value!r} must be {what}")
        return value
    return check


positive_int = whole_number(1, None, "a whole number of at least 1")
count = whole_number(0, 100000, "a whole number from 0 to 100000")
seconds = whole_number(10, 65535, "a number of seconds from 10 to 65535")
port_number = whole_number(1, 65535, "a port number from 1 to 65535")
timeout_seconds = whole_number(1, 60, "a number of seconds from 1 to 60")
idle_seconds = whole_number(60, 7 * 86400, "a number of seconds from 60 to 604800")


def byte_size(value: Any) -> int:
    match = BYTE_SIZE.match(str(value)) if not isinstance(value, bool) and isinstance(value, (int, str)) else None
    size = int(match.group(1)) << (10 * " KMGT".index(match.group(2) or " ")) if match else 0
    if size < 1:
        raise ValueError(f"{value!r} must be a size of at least 1 byte: a number of bytes, or with K, M, G or T "
                         "(powers of 1024) such as 500M or 1G")
    return size


def plain_text(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise TypeError(f"expected text, got {type(value).__name__}")
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise ValueError("must not contain control characters such as newlines")
    return text


def matching(pattern: re.Pattern[str], allowed: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = plain_text(value)
        if not pattern.match(text):
            raise ValueError(f"{text!r} is not allowed; expected {allowed}")
        return text
    return convert


def absolute_path(value: Any) -> str:
    text = plain_text(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} must be an absolute path")
    if "%" in text or "," in text:
        # '%' is a filename pattern in sbatch --output; ',' breaks bind specs.
        raise ValueError(f"{text!r} must not contain '%' or ','")
    return text.rstrip("/") or "/"


def plain_path(value: Any) -> str:
    text = plain_text(value)
    if not re.match(r"[A-Za-z0-9_./+-]+\Z", text):
        raise ValueError(f"{text!r} must be a command name or path without spaces or special characters")
    return text


def string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return tuple(plain_text(item) for item in value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} must be true or false")
    return value


def email_address(value: Any) -> str:

    try:
        return check_email(plain_text(value))
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def address_pattern(**samples: str) -> Callable[[Any], str]:
    """An address pattern with one of the placeholders named, which must give a valid address."""
    names = " or ".join("{" + name + "}" for name in samples)

    def convert(value: Any) -> str:
        text = plain_text(value)
        if not any("{" + name + "}" in text for name in samples):
            raise ValueError(f"{text!r} must contain {names}, for example {names.split()[0]}@example.org")
        try:
            filled = text.format(**samples)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"{text!r}: the only placeholders allowed are {names}") from None
        email_address(filled)
        return text
    return convert


def http_url(value: Any) -> str:
    text = plain_text(value)
    if not re.match(r"https?://[^\s/]+", text):
        raise ValueError(f"{text!r} must be an http:// or https:// URL")
    return text


def port_range(value: Any) -> tuple[int, int]:
    match = re.match(r"([0-9]+)-([0-9]+)\Z", plain_text(value))
    low, high = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not 1024 <= low <= high <= 65535:
        raise ValueError(f"{value!r} must be a range of ports such as 20000-39999 (from 1024 to 65535)")
    return low, high


def bind_list(value: Any) -> tuple[tuple[str, str], ...]:
    binds = []
    for item in string_list(value):
        source, _, target = item.partition(":")
        source, target = absolute_path(source), absolute_path(target or source)
        if ":" in target:
            raise ValueError(f"{item!r}: expected SOURCE or SOURCE:TARGET, absolute paths")
        binds.append((source, target))
    return tuple(binds)
