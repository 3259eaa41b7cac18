"""How results are printed: tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

import click

from ..storage import human_size  # noqa: F401  (re-exported for the commands)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(line.format(*headers).rstrip())
    for row in rows:
        click.echo(line.format(*row).rstrip())


def warn(message: str) -> None:
    click.echo(f"gear: warning: {message}", err=True)


def is_tty() -> bool:
    return sys.stdout.isatty()
