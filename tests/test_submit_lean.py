"""The lean pieces of the submission path give exactly what the standard library's versions gave."""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path

from gear_hpc.base import names
from gear_hpc.slurm import render, skeleton

ALPHABET = "az09_@%+=:,./-'\" é\n\t$!*~µ\x00\x7f\x85\u2028"


def _words(count: int, alphabet: str = ALPHABET, longest: int = 6) -> list[str]:
    chance = random.Random(13)
    return ["".join(chance.choice(alphabet) for _ in range(chance.randint(0, longest))) for _ in range(count)]


def test_quote_is_shlex_quote() -> None:
    for word in _words(50_000):
        assert render.quote(word) == shlex.quote(word), repr(word)


def test_name_check_is_the_pattern() -> None:
    pattern = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
    for word in _words(50_000, "az09._-A/é\n ", 4):
        assert names._is_name(word) == bool(pattern.match(word)), repr(word)


# The fill that skeleton.py had with regular expressions: the reference.
_PLACE = re.compile(r"GEARPH(\d+)X")
_PIECE = re.compile(r"\x01([QSLW])([^\x02]*)\x02|GEARPH(\d+)X")


def _fill_with_re(text: str, values: list[str]) -> str:
    def expand(inner: str) -> str:
        return _PLACE.sub(lambda m: values[int(m.group(1))], inner)

    def piece(match: re.Match[str]) -> str:
        if match.group(3) is not None:
            return values[int(match.group(3))]
        kind, inner = match.group(1), match.group(2)
        if kind == "Q":
            return render.shell_quote(expand(inner))
        if kind == "S":
            return render.sbatch_value(expand(inner))
        words = [expand(word) for word in inner.split("\x03")] if inner else []
        return render.shell_words_lines(words) if kind == "L" else render.shell_quote(words)

    return _PIECE.sub(piece, text)


def test_fill_is_the_regular_expression_fill() -> None:
    values = ["v0", "it's", "a b", "--x", "/p/q", "", "7"]
    pieces = ["GEARPH0X", "GEARPH1X", "GEARPH6X", "GEARPHX", "GEARPH", "GEARPH12", "\x01Q", "\x01QGEARPH2X\x02",
              "\x01Sv\x02", "\x01LGEARPH3X\x03GEARPH1X\x02", "\x01WGEARPH4X\x03a\x02", "\x01L\x02", "\x01Xq\x02",
              "\x02", "\x03", "x", " ", "\n", "GE", "ARPH", "1X", "\x01Q-GEARPH0X-\x02"]
    chance = random.Random(7)
    for _ in range(20_000):
        text = "".join(chance.choice(pieces) for _ in range(chance.randint(0, 6)))
        try:
            expected: str | Exception = _fill_with_re(text, values)
        except Exception as exc:   # a placeholder beyond the values, a value sbatch refuses
            expected = exc
        try:
            got: str | Exception = skeleton.fill(text, values)
        except Exception as exc:
            got = exc
        if isinstance(expected, Exception):
            assert type(got) is type(expected), repr(text)
        else:
            assert got == expected, repr(text)


def test_template_files_in_the_order_of_sorted_rglob() -> None:
    templates = Path(skeleton.TEMPLATES)
    expected = [str(p.relative_to(templates)) for p in sorted(templates.rglob("*")) if p.is_file()]
    assert skeleton._template_files() == expected
