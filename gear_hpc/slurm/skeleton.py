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

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePath

from .render import sbatch_value, shell_quote, shell_words_lines

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_OPEN, _CLOSE, _SEP = "\x01", "\x02", "\x03"
_PLACE = re.compile(r"GEARPH(\d+)X")
_PIECE = re.compile(r"\x01([QSLW])([^\x02]*)\x02|GEARPH(\d+)X")
_FORBIDDEN = re.compile(r"[\x01\x02\x03]|GEARPH")


def render_cached(template: str, context: dict[str, Any], jinja_render: Callable[..., str]) -> str:
    """The script `jinja_render(template, **context)` would give, from a kept skeleton when there is one."""
    values: list[str] = []
    shape: list[str] = []
    try:
        shaped = {key: _shape(value, values, shape) for key, value in sorted(context.items())}
    except _Unshaped:
        return jinja_render(template, **context)
    if any(_FORBIDDEN.search(value) for value in values):
        return jinja_render(template, **context)
    path = _path(template, shape)
    if path is not None:
        try:
            return fill(path.read_text(), values)
        except (FileNotFoundError, ValueError, IndexError, UnicodeDecodeError):
            pass   # none yet, or not one this code wrote: render, and keep a good one
    text = jinja_render(template, **context)
    if path is not None:
        skeleton = _render_skeleton(template, shaped)
        if fill(skeleton, values) == text:
            _keep(path, skeleton)
    return text


def fill(skeleton: str, values: list[str]) -> str:
    """The skeleton with its values put in, each as its filter would have written it."""
    def expand(text: str) -> str:
        return _PLACE.sub(lambda m: values[int(m.group(1))], text)

    def piece(match: re.Match[str]) -> str:
        if match.group(3) is not None:
            return values[int(match.group(3))]
        kind, inner = match.group(1), match.group(2)
        if kind == "Q":
            return shell_quote(expand(inner))
        if kind == "S":
            return sbatch_value(expand(inner))
        words = [expand(word) for word in inner.split(_SEP)] if inner else []
        return shell_words_lines(words) if kind == "L" else shell_quote(words)

    return _PIECE.sub(piece, skeleton)


def _shape(value: Any, values: list[str], shape: list[str]) -> Any:
    """`value` with each non-empty text (or path) replaced by a placeholder; what is kept goes into `shape`."""
    if isinstance(value, (str, PurePath)):
        text = str(value)
        if not text:
            shape.append("e")
            return value
        shape.append("s")
        values.append(text)
        return f"GEARPH{len(values) - 1}X"
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


def _path(template: str, shape: list[str]) -> Path | None:
    from ..base.facts import cache_dir

    site_cache = cache_dir()
    if site_cache is None:
        return None
    digest = hashlib.sha256(template.encode())
    # The templates, and this code and render.py's filters, which write and fill the skeleton.
    here = Path(__file__).resolve().parent
    try:
        digest.update((here / "skeleton.py").read_bytes() + (here / "render.py").read_bytes())
        for source in sorted(TEMPLATES.rglob("*")):
            if source.is_file():
                digest.update(str(source.relative_to(TEMPLATES)).encode() + b"\0" + source.read_bytes() + b"\0")
    except OSError:
        return None   # sources not readable as files (a zipped install): no skeletons, Jinja every time
    digest.update(" ".join(shape).encode())
    return Path(site_cache).parent / "skeletons" / f"{digest.hexdigest()[:32]}.sh"


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


def _keep(path: Path, skeleton: str) -> None:
    """Write the skeleton whole (a temporary file renamed into place); a cache that cannot be written is
    only a slower next submission."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(skeleton)
        os.replace(temporary, path)
    except OSError:
        pass
