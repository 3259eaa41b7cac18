"""The suite itself: rules that keep it collectable on any machine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_modules_have_unique_basenames():
    """pytest imports tests/ and tests/cluster/ without packages: one basename twice stops collection."""
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
