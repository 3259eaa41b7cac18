"""Sizes for people (no imports: the fast path of `gear ls` prints them)."""

from __future__ import annotations


def human_size(size: int | None) -> str:
    """1536 -> "1.5 KiB" (binary units, as du -h)."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
