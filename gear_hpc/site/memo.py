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

The format (read in base/facts.py, where the fast path finds it; written
here): a `marshal` file, `last-valid.marshal` in the user's cache
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

from ..base.facts import (
    DEFAULT_CONFIG_DIR as DEFAULT_CONFIG_DIR,
    SITE_FILES as SITE_FILES,
    cache_dir as cache_dir,
    config_dir_name as config_dir_name,
    memo_key,
    memo_path as memo_path,
    read_memo,
    valid_storage_root as valid_storage_root,
)

# Annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def parsed(directory: str, name: str, text: str) -> dict[str, Any] | None:
    """What the site file `name` of `directory` parsed to, if the record holds exactly this text of it."""
    if name not in SITE_FILES:
        return None
    stored = read_memo()
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
        record = (*memo_key(directory), tuple(entries), storage_root)
        if read_memo() == record:
            return
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(marshal.dumps(record))
        os.replace(tmp, path)
    except (OSError, ValueError, KeyError):
        pass
