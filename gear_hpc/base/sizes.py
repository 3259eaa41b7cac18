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


def human_rate(bytes_per_second: float | None) -> str:
    """A copy's speed: "12.3 MB/s", "340 KB/s" below 1 MB/s (never "0.0 MB/s" while bytes move)."""
    value = float(bytes_per_second or 0)
    if value >= 1e6:
        return f"{value / 1e6:.1f} MB/s"
    if value >= 1e3:
        return f"{value / 1e3:.0f} KB/s"
    return f"{value:.0f} B/s"


def human_count(per_second: float | None) -> str:
    """2400.4 -> "2,400"; below 10, one decimal ("0.5")."""
    value = float(per_second or 0)
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"
