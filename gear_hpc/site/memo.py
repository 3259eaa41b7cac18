"""The last site configuration that loaded and validated, remembered for the fast path.

`site.load()` parses and validates three YAML files, which takes dataclasses,
regular expressions and, when a file changed, PyYAML: more time than the
whole of `gear ls`. After each successful load it records here the texts it
validated, with what else decides the outcome (GEAR_STORAGE_ROOT, gear's
site-loading code, the interpreter) and the storage root that resulted. The
fast path of `gear ls`/`gear status` (cli/fastpath.py) reads the same files
and takes that storage root only if all of it is unchanged; otherwise the
normal path loads the site, and reports any problem, as always.

The record is a `marshal` file in the user's cache directory: marshal is
built into the interpreter, while `json` imports `re` (5 ms at start).
"""

from __future__ import annotations

import marshal
import os
import sys

DEFAULT_CONFIG_DIR = "/etc/gear"
SITE_FILES = ("site.yaml", "compute-types.yaml", "images.yaml")
_FORMAT = "gear-site-memo-1"
# The validation rules, under gear_hpc/: a change to any of them invalidates the record.
_RULES = ("site/loading.py", "site/checks.py", "site/model.py", "base/names.py")  # names.py checks addresses


def config_dir_name() -> str:
    """The site configuration directory, as site.config_dir() chooses it."""
    return os.environ.get("GEAR_SITE_CONFIG") or DEFAULT_CONFIG_DIR


def cache_dir() -> str | None:
    """The user's cache of site files: this record, and site/loading.py's parsed YAML (None: no cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if os.environ.get("HOME") else "")
    return os.path.join(base, "gear-hpc", "site") if base else None


def memo_path() -> str | None:
    """Where the record is kept (None when there is no cache directory: then nothing is remembered)."""
    directory = cache_dir()
    return os.path.join(directory, "last-valid.marshal") if directory else None


def _record(texts: list[str], storage_root: str | None) -> tuple[str, str, tuple[str | int, ...], tuple[str, ...], str | None]:
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gear_hpc/
    code: list[str | int] = [sys.version]
    for name in _RULES:
        info = os.stat(os.path.join(package, name))
        code += [info.st_mtime_ns, info.st_size]
    return (_FORMAT, os.environ.get("GEAR_STORAGE_ROOT") or "", tuple(code), tuple(texts), storage_root)


def _read(path: str) -> object:
    with open(path, "rb") as handle:
        return marshal.loads(handle.read())


def remember(texts: list[str], storage_root: str) -> None:
    """Record that these texts of SITE_FILES validated and gave this storage root (never fails)."""
    path = memo_path()
    if path is None:
        return
    try:
        record = _record(texts, storage_root)
        try:
            if _read(path) == record:
                return
        except (OSError, EOFError, ValueError, TypeError):
            pass
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(marshal.dumps(record))
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


def valid_storage_root() -> str | None:
    """The storage root site.load() gives now, if it validated exactly these files before; else None."""
    path = memo_path()
    if path is None:
        return None
    directory = config_dir_name()
    try:
        texts = []
        for name in SITE_FILES:
            # Decoded as site.load() decodes them (Path.read_text: the locale's encoding).
            with open(os.path.join(directory, name)) as handle:
                texts.append(handle.read())
        stored = _read(path)
        expected = _record(texts, None)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if (type(stored) is not tuple or len(stored) != len(expected) or stored[:-1] != expected[:-1]
            or type(stored[-1]) is not str):
        return None
    return stored[-1]
