"""How results are printed: tables for people, JSON for programs.

Without click: the fast path of `gear ls`/`gear status` (fastpath.py) prints
through these same functions, so its output cannot differ from the commands'.
`echo` does what click.echo did for the commands: one line and a newline,
ANSI escape sequences removed unless the stream is a terminal, UTF-8 when the
stream claims ASCII, flushed.
"""

from __future__ import annotations

import sys

from ..base.sizes import human_size as human_size  # re-exported for the commands

# Annotations only: importing typing would cost the fast path (fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any


def echo(text: str = "", err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    text += "\n"
    if "\x1b" in text and not _isatty(stream):
        import re

        text = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", text)
    if _is_ascii(getattr(stream, "encoding", None) or "ascii") and hasattr(stream, "buffer"):
        stream.flush()
        stream.buffer.write(text.encode("utf-8", "replace"))
        stream.buffer.flush()
        return
    stream.write(text)
    stream.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _is_ascii(encoding: str) -> bool:
    import codecs

    try:
        return codecs.lookup(encoding).name == "ascii"
    except LookupError:
        return False


def json_text(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=False)


def print_json(data: Any) -> None:
    echo(json_text(data))


def table_lines(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    if rows and all(len(row) == len(headers) for row in rows):
        # Column by column: a listing of 1,000 executions (`gear history`) is 4 ms faster so.
        widths = [max(w, max(map(len, column))) for w, column in zip(widths, zip(*rows, strict=True), strict=True)]
    else:
        for row in rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*headers).rstrip()] + [line.format(*row).rstrip() for row in rows]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    echo("\n".join(table_lines(headers, rows)))


def warn(message: str) -> None:
    echo(f"gear: warning: {message}", err=True)


def is_tty() -> bool:
    return sys.stdout.isatty()
