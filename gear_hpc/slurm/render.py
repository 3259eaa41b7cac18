"""Render templates/ into scripts, with every value shell-quoted.

Jinja's autoescape is for HTML, not shell: here `| q` quotes a value for
bash and `| sbatch` refuses anything that could start a new #SBATCH line.
"""

from __future__ import annotations

from ..base.errors import GearError

# Annotations only: typing, functools and shlex (which imports re) cost every submission (skeleton.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What shlex.quote leaves unquoted: its `[^\w@%+=:,./-]` with re.ASCII, as a set.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def shell_quote(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(shell_quote(item) for item in value)
    text = str(value)
    if "\x00" in text:
        raise GearError("a value for the batch script contains a NUL byte")
    return quote(text)


def quote(text: str) -> str:
    """shlex.quote(text), without importing shlex (tests/test_render_skeleton.py compares them)."""
    if not text:
        return "''"
    if all(char in _SAFE for char in text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def sbatch_value(value: Any) -> str:
    """A value for an #SBATCH line: sbatch reads those lines itself, not bash,
    so quoting does not help; values with newlines or spaces are refused."""
    text = str(value)
    if any(ch in text for ch in "\n\r\x00 \t\"'"):
        raise GearError(f"value {text!r} cannot be used in an #SBATCH line")
    return text


def shell_words_lines(values: list[Any]) -> str:
    """Quoted words, one option (with its value) per line, for a readable script."""
    words = [shell_quote(v) for v in values]
    lines: list[str] = []
    for word in words:
        if lines and not word.startswith("-") and lines[-1].startswith("--") and " " not in lines[-1]:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return " \\\n    ".join(lines)


_env: Any = None


def _environment() -> Any:
    global _env
    if _env is None:
        _env = _new_environment()
    return _env


def _new_environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gear_hpc", "templates"),
        bytecode_cache=_bytecode_cache(jinja2),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = shell_quote
    env.filters["sbatch"] = sbatch_value
    env.filters["q_lines"] = shell_words_lines
    return env


def _bytecode_cache(jinja2: Any) -> Any:
    """The compiled templates, kept in the user's cache (~/.cache/gear-hpc/jinja): compiling them again
    cost each submission about 20 ms. Jinja keys each by its source's checksum, so a changed template is
    compiled anew. None (compile every time) when there is no cache directory or it cannot be made."""
    import os

    from ..base.facts import cache_dir

    site_cache = cache_dir()
    if site_cache is None:
        return None
    directory = os.path.join(os.path.dirname(site_cache), "jinja")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(directory)


def render(template: str, **context: Any) -> str:
    """The template rendered with `context`; through a kept skeleton (skeleton.py) when it can be."""
    if context.get("workspace") is None:
        from .skeleton import render_cached

        return render_cached(template, context, _render_jinja)
    return _render_jinja(template, **context)


def _render_jinja(template: str, **context: Any) -> str:
    text: str = _environment().get_template(template).render(**context)
    return text
