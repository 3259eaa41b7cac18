"""Validation of every name and value that may end up on disk or in a script."""

from __future__ import annotations

from .errors import UsageError

# Annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Pattern:
    """A regular expression compiled when first used: `re` costs a submission 6 ms to import, and the
    checks on its path (check_name, check_text) answer the common case without it."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.compiled: Any = None

    def __getattr__(self, name: str) -> Any:
        if self.compiled is None:
            import re

            self.compiled = re.compile(self.pattern)
        return getattr(self.compiled, name)


MAX_NAME = 64
_NAME = _Pattern(r"[a-z0-9][a-z0-9._-]*\Z")
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_NAME_REST = _NAME_FIRST | frozenset("._-")
_CONTROL = _Pattern(r"[\x00-\x1f\x7f]")


def check_name(value: str, kind: str = "name") -> str:
    """Return `value` if it is a valid container/dataset name, else raise.

    Names are 1-64 characters of [a-z0-9][a-z0-9._-]*; this refuses `..`,
    `../x`, `/abs`, upper case and non-ASCII before anything is touched.
    """
    if not value:
        raise UsageError(f"{kind} must not be empty")
    if len(value) > MAX_NAME:
        raise UsageError(f"{kind} {value[:20]!r}… is {len(value)} characters; at most {MAX_NAME} are allowed")
    if not _is_name(value) or value in (".", ".."):
        raise UsageError(
            f"invalid {kind} {value!r}: use 1-{MAX_NAME} characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def _is_name(value: str) -> bool:
    """_NAME.match(value), without compiling it."""
    return bool(value) and value[0] in _NAME_FIRST and all(char in _NAME_REST for char in value)


def parse_execution_id(value: str) -> tuple[str, int]:
    """Split `CONTAINER/N` into its parts, validating both."""
    container, sep, number = value.partition("/")
    if not sep or not number.isdigit() or not number.isascii() or int(number) < 1:
        raise UsageError(f"invalid execution {value!r}: expected CONTAINER/N, for example mnist-train/3")
    return check_name(container, "container name"), int(number)


# A login name as Debian's adduser allows it by default (NAME_REGEX): no '/', no leading '-' or '.'.
_USER = _Pattern(r"[a-z_][a-z0-9_-]{0,31}\Z")


def check_user(value: str) -> str:
    """Return `value` if it can be a user's login name (another user's, in `alice/C/N`), else raise."""
    if not _USER.match(value):
        raise UsageError(f"{value!r} is not a user name")
    return value


def parse_shared_id(value: str, with_number: bool) -> tuple[str | None, str, int | None]:
    """`[USER/]CONTAINER/N` (with_number) or `[USER/]CONTAINER`: (user or None, container, number or None).

    `a/3` is always your container a's execution 3; `alice/c/3` is user alice's.
    """
    parts = value.split("/")
    if with_number:
        if len(parts) == 3:
            owner = check_user(parts[0])
            container, number = parse_execution_id(f"{parts[1]}/{parts[2]}")
            return owner, container, number
        container, number = parse_execution_id(value)
        return None, container, number
    if len(parts) == 2:
        return check_user(parts[0]), check_name(parts[1], "container name"), None
    return None, check_name(value, "container name"), None


def check_text(value: str, what: str) -> str:
    """Refuse control characters (newline, CR, NUL…) in a value that reaches a script.

    A newline in an #SBATCH line starts a new directive, and a NUL cannot
    pass through exec at all, so these are refused rather than escaped.
    """
    found = None if value.isprintable() else _CONTROL.search(value)   # printable: no control character
    if found:
        raise UsageError(f"{what} contains a control character ({found.group()!r}); it is not allowed")
    try:
        value.encode("utf-8")  # bytes that are not UTF-8 arrive as surrogates, which no file or ledger takes
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text ({ascii(value)}); use UTF-8") from None
    return value


# Deliberately narrower than RFC 5321: the address reaches an #SBATCH line and
# a mail header, so no quotes, spaces, commas (a second recipient) or '%'.
_LOCAL = _Pattern(r"[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*\Z")
_LABEL = _Pattern(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_PHONE_SEPARATORS = _Pattern(r"[ ().-]")
_E164 = _Pattern(r"\+[1-9][0-9]{6,14}\Z")


def check_email(value: str, what: str = "email address") -> str:
    """Return `value` if it is a plain, sane email address, else raise UsageError."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must not be empty")
    import re

    if re.search(r"[\x00-\x20\x7f]", value) or not value.isascii():
        raise UsageError(f"invalid {what} {value!r}: no spaces, line breaks or non-ASCII characters")
    if len(value) > 254 or value.count("@") != 1:
        raise UsageError(f"invalid {what} {value!r}: expected exactly one '@', as in alice@example.org")
    local, domain = value.split("@")
    if not local or len(local) > 64 or not _LOCAL.match(local):
        raise UsageError(f"invalid {what} {value!r}: the part before '@' may use letters, digits and . _ + -")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or not labels[-1].isalpha():
        raise UsageError(f"invalid {what} {value!r}: {domain!r} is not a domain name such as example.org")
    return value


def check_phone(value: str) -> str:
    """A phone number in E.164 form (+ country code, then digits); spaces, dashes,
    dots and parentheses are dropped. Returns the normalised number."""
    import re

    if not isinstance(value, str) or re.search(r"[\x00-\x1f\x7f]", value):
        raise UsageError(f"invalid phone number {value!r}: it contains a control character")
    number: str = _PHONE_SEPARATORS.sub("", value)
    if not _E164.match(number):
        raise UsageError(f"invalid phone number {value!r}: use the international form, "
                         "+ then the country code and number, for example +15551234567")
    return number
