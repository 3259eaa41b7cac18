"""json.loads without `import json`, for the fast paths (cli/fastpath.py): a leaf, standard library only."""

from __future__ import annotations

# Annotations only: importing typing would cost the fast path (cli/fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _JSONContext:
    """What CPython's JSON scanner asks of json.JSONDecoder, as json.loads() sets it by default."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float   # NaN, Infinity, -Infinity


def loads(text: str) -> Any:
    """json.loads(text), through CPython's C scanner directly where there is one.

    `import json` costs the fast path 8-9 ms inside the cluster (json.decoder
    imports `re`, and `re` imports enum): more than the rest of `gear ls
    USER/`, or of reading the status records of open executions. The C
    scanner (_json, which json.loads itself uses) needs none of it; where it
    is missing (another Python), json.loads does the same.
    """
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(" \t\n\r"))   # json.loads skips leading whitespace too
    try:
        data, end = make_scanner(_JSONContext())(text, start)  # type: ignore[arg-type]  # a duck-typed context, as json.decoder passes
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data after the JSON value")
    return data
