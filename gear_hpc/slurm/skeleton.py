"""The job script without Jinja2 on the submit path: a rendered skeleton, kept, and its values put in.

Importing Jinja2 and rendering cost a submission ~25 ms, several times a bare
sbatch (docs/benchmarks.md, the cost of one submission). The script's shape
depends only on the *shape* of what it is rendered with — which values are
given, empty or None, how long the lists are, the numbers and flags — while
every text value only fills a place, raw or through one of render.py's
filters (`q`, `sbatch`, `q_lines`), possibly joined with other text (`~`).
So the template is rendered once per shape with a placeholder for each text
value and a marker for each filter, kept in the user's cache
(~/.cache/gear-hpc/skeletons), and later submissions of that shape put the
real values in through the very same functions (shell_quote, sbatch_value,
shell_words_lines): the result is the script Jinja would have written.

A skeleton is kept only when, the first time, filling it gives exactly what
Jinja rendered; the key holds the template sources' hash, so a changed
template makes a new one. The templates this serves (job.sh.j2 and its
parts, not jupyter.sh.j2) never compare, slice or measure a text value: that
is what makes the shape the only thing that matters (tests/test_render.py
checks every variant both ways).
"""

from __future__ import annotations

import os

from .render import sbatch_value, shell_quote, shell_words_lines

# Annotations only. No re, hashlib or pathlib either: each costs a submission more than filling the
# skeleton does (docs/benchmarks.md, the cost of one submission).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "templates")
_OPEN, _CLOSE, _SEP = "\x01", "\x02", "\x03"
_MARK = "GEARPH"
_KINDS = "QSLW"


def render_cached(template: str, context: dict[str, Any], jinja_render: Callable[..., str]) -> str:
    """The script `jinja_render(template, **context)` would give, from a kept skeleton when there is one."""
    shaped = _shaped(context)
    if shaped is None:
        return jinja_render(template, **context)
    values, shape, placed = shaped
    path = _path(template, shape)
    if path is not None:
        text = _fill_kept(path, values)
        if text is not None:
            return text
    text = jinja_render(template, **context)
    if path is not None:
        skeleton = _render_skeleton(template, placed)
        if fill(skeleton, values) == text:
            _keep(path, skeleton)
    return text


def kept(template: str, context: dict[str, Any]) -> str | None:
    """The script from a kept skeleton of this shape, or None (none kept yet, or values no skeleton can
    carry): never renders with Jinja. For the lean submission (executions/quick_submit.py)."""
    found = kept_skeleton(template, context)
    return None if found is None else fill_kept(found, context)


def kept_skeleton(template: str, context: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The kept skeleton for the shape of `context`, and that shape; None if there is none (or none can be)."""
    shaped = _shaped(context)
    path = None if shaped is None else _path(template, shaped[1])
    if shaped is None or path is None:
        return None
    try:
        with open(path) as handle:
            return handle.read(), shaped[1]
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def fill_kept(found: tuple[str, list[str]], context: dict[str, Any]) -> str | None:
    """The script from a skeleton kept_skeleton() found, for a context of the same shape (else None)."""
    shaped = _shaped(context)
    if shaped is None or shaped[1] != found[1]:
        return None
    try:
        return fill(found[0], shaped[0])
    except (ValueError, IndexError):
        return None


def _shaped(context: dict[str, Any]) -> tuple[list[str], list[str], dict[str, Any]] | None:
    """(values, shape, context with placeholders), or None when a value cannot be shaped or holds a marker."""
    values: list[str] = []
    shape: list[str] = []
    try:
        placed = {key: _shape(value, values, shape) for key, value in sorted(context.items())}
    except _Unshaped:
        return None
    if any(_OPEN in value or _CLOSE in value or _SEP in value or _MARK in value for value in values):
        return None
    return values, shape, placed


def _fill_kept(path: str, values: list[str]) -> str | None:
    try:
        with open(path) as handle:
            return fill(handle.read(), values)
    except (FileNotFoundError, ValueError, IndexError, UnicodeDecodeError):
        return None   # none yet, or not one this code wrote: render, and keep a good one


def fill(skeleton: str, values: list[str]) -> str:
    """The skeleton with its values put in, each as its filter would have written it.

    Read piece by piece, without re: `\x01` KIND INNER `\x02` is a filtered value (INNER may hold
    placeholders), `GEARPH<digits>X` a raw one. What is not one of these is kept as it is.
    """
    out: list[str] = []
    i, end = 0, len(skeleton)
    while i < end:
        opened, mark = skeleton.find(_OPEN, i), skeleton.find(_MARK, i)
        if opened < 0 and mark < 0:
            out.append(skeleton[i:])
            break
        if opened >= 0 and (mark < 0 or opened < mark):
            close = skeleton.find(_CLOSE, opened + 1)
            kind = skeleton[opened + 1:opened + 2]
            if close < 0 or kind not in _KINDS or not kind:
                out.append(skeleton[i:opened + 1])
                i = opened + 1
                continue
            out.append(skeleton[i:opened])
            out.append(_piece(kind, skeleton[opened + 2:close], values))
            i = close + 1
            continue
        number, after = _placeholder(skeleton, mark)
        if number is None:
            out.append(skeleton[i:mark + 1])
            i = mark + 1
            continue
        out.append(skeleton[i:mark])
        out.append(values[number])
        i = after
    return "".join(out)


def _placeholder(text: str, at: int) -> tuple[int | None, int]:
    """The number of `GEARPH<digits>X` at `at`, and where it ends; (None, at) if there is none."""
    digits = start = at + len(_MARK)
    while digits < len(text) and text[digits] in "0123456789":
        digits += 1
    if digits == start or text[digits:digits + 1] != "X":
        return None, at
    return int(text[start:digits]), digits + 1


def _expand(text: str, values: list[str]) -> str:
    if _MARK not in text:
        return text
    return fill(text, values)   # no \x01 inside an inner value: only placeholders are put in


def _piece(kind: str, inner: str, values: list[str]) -> str:
    if kind == "Q":
        return shell_quote(_expand(inner, values))
    if kind == "S":
        return sbatch_value(_expand(inner, values))
    words = [_expand(word, values) for word in inner.split(_SEP)] if inner else []
    return shell_words_lines(words) if kind == "L" else shell_quote(words)


def _shape(value: Any, values: list[str], shape: list[str]) -> Any:
    """`value` with each non-empty text (or path) replaced by a placeholder; what is kept goes into `shape`."""
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if not text:
            shape.append("e")
            return value
        shape.append("s")
        values.append(text)
        return f"{_MARK}{len(values) - 1}X"
    if isinstance(value, (list, tuple)):
        shape.append(f"{type(value).__name__}{len(value)}")
        items = [_shape(item, values, shape) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float)):
        shape.append(repr(value))
        return value
    raise _Unshaped(type(value).__name__)   # an object (a Workspace): rendered by Jinja every time


class _Unshaped(Exception):
    pass


def _sha256() -> Any:
    try:   # the interpreter's own SHA-256, not OpenSSL's (hashlib imports _hashlib: 3 ms); the same digest
        from _sha2 import sha256  # type: ignore[import-not-found]  # Python 3.12+
    except ImportError:
        from hashlib import sha256
    return sha256()


def _path(template: str, shape: list[str]) -> str | None:
    from ..base.facts import cache_dir

    site_cache = cache_dir()
    if site_cache is None:
        return None
    digest = _sha256()
    digest.update(template.encode())
    # The templates, and this code and render.py's filters, which write and fill the skeleton.
    here = os.path.dirname(os.path.realpath(__file__))
    try:
        with open(os.path.join(here, "skeleton.py"), "rb") as one, open(os.path.join(here, "render.py"), "rb") as two:
            digest.update(one.read() + two.read())
        for relative in _template_files():
            with open(os.path.join(TEMPLATES, relative), "rb") as source:
                digest.update(relative.encode() + b"\0" + source.read() + b"\0")
    except OSError:
        return None   # sources not readable as files (a zipped install): no skeletons, Jinja every time
    digest.update(" ".join(shape).encode())
    return os.path.join(os.path.dirname(site_cache), "skeletons", f"{digest.hexdigest()[:32]}.sh")


def _template_files() -> list[str]:
    """The files under TEMPLATES, relative, in the order of sorted(Path(TEMPLATES).rglob("*")): by path parts."""
    found: list[str] = []
    for directory, _subdirectories, files in os.walk(TEMPLATES, onerror=_raise):
        relative = os.path.relpath(directory, TEMPLATES)
        for name in files:
            path = name if relative == "." else f"{relative}/{name}"
            if os.path.isfile(os.path.join(TEMPLATES, path)):
                found.append(path)
    return sorted(found, key=lambda path: path.split("/"))


def _raise(error: OSError) -> None:
    raise error


def _render_skeleton(template: str, shaped: dict[str, Any]) -> str:
    from .render import _environment

    # An overlay shares the filters' dict and the loaded templates (bound to the real environment):
    # give it its own of both.
    env = _environment().overlay(cache_size=0)
    env.filters = dict(env.filters)
    env.filters["q"] = lambda value: _marker("W" if isinstance(value, (list, tuple)) else "Q", value)
    env.filters["sbatch"] = lambda value: _marker("S", value)
    env.filters["q_lines"] = lambda value: _marker("L", value)
    text: str = env.get_template(template).render(**shaped)
    return text


def _marker(kind: str, value: Any) -> str:
    inner = _SEP.join(str(item) for item in value) if kind in "LW" else str(value)
    return f"{_OPEN}{kind}{inner}{_CLOSE}"


def _keep(path: str, skeleton: str) -> None:
    """Write the skeleton whole (a temporary file renamed into place); a cache that cannot be written is
    only a slower next submission."""
    try:
        directory, name = os.path.split(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temporary = os.path.join(directory, f".{name}.{os.getpid()}")
        with open(temporary, "w") as handle:
            handle.write(skeleton)
        os.replace(temporary, path)
    except OSError:
        pass
