"""The user's one cache of the site files: what they parsed to, and that they validated, for the fast path.

`site.load()` parses and validates three YAML files, which takes dataclasses,
regular expressions and, when a file changed, PyYAML: more time than the
whole of `gear ls`. After each successful load it records here, in ONE
record, the texts it validated, what each parsed to, what else decides the
outcome (the directory, GEAR_STORAGE_ROOT, gear's site-loading code, the
interpreter) and the storage root that resulted. It serves two readers:

- `site.load()` itself (site/loading.py, `parsed`): a site file whose text
  is the recorded one is not parsed again (no PyYAML), but its recorded data
  is validated like a fresh parse, every time;
- the fast path of `gear ls`/`gear status` (cli/fastpath.py,
  `valid_storage_root`), which reads the same files and takes the recorded
  storage root only if all of the above is unchanged; otherwise the normal
  path loads the site, and reports any problem, as always.

The format: a `marshal` file, `last-valid.marshal` in the user's cache
directory ($XDG_CACHE_HOME or ~/.cache, then gear-hpc/site/; `cache_dir`),
holding one tuple

    (FORMAT, directory, GEAR_STORAGE_ROOT or "", code, files, storage_root)

where `directory` is the site configuration directory (absolute), `code` is
the interpreter's version with the mtime and size of each module of the
validation rules (_RULES), `files` is one `(text, data)` pair per SITE_FILES
in that order (`data` the parsed mapping, or None when marshal cannot hold
it, e.g. a YAML date), and `storage_root` is what validation gave. marshal
is built into the interpreter, while `json` imports `re` (5 ms at start),
and it gives back exactly the types it was given (integer keys stay integers).
It is written to a temporary file and renamed, only after a load that
validated, and only when it differs; a record that cannot be read, has
another shape or another FORMAT is ignored (and replaced by the next load).

Why it is safe: the cache is the user's own, and they can write anything
into it. Nothing in it is trusted beyond the bytes it names: its data and its
storage root are used only while the site files in `directory` read exactly
as the recorded texts (and, for the storage root, the environment and
gear's code are unchanged), and the site files are the admin's. A record
that lies about what those texts parse to or validate to misleads only
its own user's gear, which that user could as well point at a site
directory of their own (GEAR_SITE_CONFIG); nothing run for another user
(gear-mailprog on the controller) reads this user's cache.
"""

from __future__ import annotations

import marshal
import os
import sys

# Annotations only: importing typing would cost the fast path (fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONFIG_DIR = "/etc/gear"
SITE_FILES = ("site.yaml", "compute-types.yaml", "images.yaml")
_FORMAT = "gear-site-2"
# The validation rules, under gear_hpc/: a change to any of them invalidates the record.
_RULES = ("site/loading.py", "site/checks.py", "site/model.py", "base/names.py")  # names.py checks addresses


def config_dir_name() -> str:
    """The site configuration directory, as site.config_dir() chooses it."""
    return os.environ.get("GEAR_SITE_CONFIG") or DEFAULT_CONFIG_DIR


def cache_dir() -> str | None:
    """The user's cache of site files, where the record is kept (None: no cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if os.environ.get("HOME") else "")
    return os.path.join(base, "gear-hpc", "site") if base else None


def memo_path() -> str | None:
    """Where the record is kept (None when there is no cache directory: then nothing is remembered)."""
    directory = cache_dir()
    return os.path.join(directory, "last-valid.marshal") if directory else None


def _key(directory: str) -> tuple[str, str, str, tuple[str | int, ...]]:
    """The record's first four fields: what, beside the texts, decides what a load gives."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gear_hpc/
    code: list[str | int] = [sys.version]
    for name in _RULES:
        info = os.stat(os.path.join(package, name))
        code += [info.st_mtime_ns, info.st_size]
    return (_FORMAT, os.path.abspath(directory), os.environ.get("GEAR_STORAGE_ROOT") or "", tuple(code))


def _read() -> tuple[Any, ...] | None:
    """The record as stored, if it has the record's shape; else None."""
    path = memo_path()
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            stored = marshal.loads(handle.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if (type(stored) is not tuple or len(stored) != 6 or stored[0] != _FORMAT or type(stored[4]) is not tuple
            or len(stored[4]) != len(SITE_FILES)
            or any(type(entry) is not tuple or len(entry) != 2 or type(entry[0]) is not str for entry in stored[4])):
        return None
    return stored


def parsed(directory: str, name: str, text: str) -> dict[str, Any] | None:
    """What the site file `name` of `directory` parsed to, if the record holds exactly this text of it."""
    if name not in SITE_FILES:
        return None
    stored = _read()
    if stored is None or stored[1] != os.path.abspath(directory):
        return None
    recorded_text, data = stored[4][SITE_FILES.index(name)]
    return data if recorded_text == text and type(data) is dict else None


def remember(directory: str, files: dict[str, tuple[str, dict[str, Any]]], storage_root: str) -> None:
    """Record that these texts and data of SITE_FILES validated and gave this storage root (never fails)."""
    path = memo_path()
    if path is None:
        return
    try:
        entries: list[tuple[str, dict[str, Any] | None]] = []
        for name in SITE_FILES:
            text, data = files[name]
            try:
                marshal.dumps(data)
            except ValueError:  # e.g. a YAML date: parsed again next time
                entries.append((text, None))
            else:
                entries.append((text, data))
        record = (*_key(directory), tuple(entries), storage_root)
        if _read() == record:
            return
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(marshal.dumps(record))
        os.replace(tmp, path)
    except (OSError, ValueError, KeyError):
        pass


def valid_storage_root() -> str | None:
    """The storage root site.load() gives now, if it validated exactly these files before; else None."""
    directory = config_dir_name()
    stored = _read()
    if stored is None:
        return None
    try:
        for name, (recorded_text, _data) in zip(SITE_FILES, stored[4], strict=True):
            # Decoded as site.load() decodes them (Path.read_text: the locale's encoding).
            with open(os.path.join(directory, name)) as handle:
                if handle.read() != recorded_text:
                    return None
        key = _key(directory)
    except (OSError, ValueError):
        return None
    if stored[:4] != key or type(stored[5]) is not str:
        return None
    return stored[5]
