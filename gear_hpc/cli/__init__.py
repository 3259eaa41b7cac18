"""The `gear` command: thin click commands over the gear_hpc library.

Subcommands live in their own modules and are imported only when called,
so `gear ls` on a busy login node pays for nothing it does not use. `gear ls`
and `gear status` [--json] when none of the user's executions is open do not
even import click (fastpath.py); everything else goes through the click group
in group.py.
"""

from __future__ import annotations

import os
import sys

# Annotations only: importing typing would cost the fast path (fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# command name -> "module:attribute", loaded on first use
COMMANDS = {
    "types": "catalog:types",
    "images": "catalog:images",
    "run": "run:run",
    "convert": "convert:convert",
    "jupyter": "jupyter:jupyter",
    "ood-submit": "ood:ood_submit",
    "sbatch": "sbatch:sbatch",
    "continue": "run:continue_",
    "status": "inspect:status",
    "ls": "inspect:ls",
    "history": "inspect:history",
    "show": "inspect:show",
    "logs": "inspect:logs",
    "download": "inspect:download",
    "stop": "control:stop",
    "delete": "containers:delete",
    "share": "sharing:share",
    "data": "data:data",
    "du": "data:du",
    "devcluster": "devcluster:devcluster",
    "notify": "notify:notify",
    "tune": "tune:tune",
    "metrics": "metrics:metrics",
}


# What cli/fastpath.py answers for the user's own executions.
LOOKS = (["ls"], ["ls", "--json"], ["status"], ["status", "--json"])


def ask_squeue_on_hint() -> Any:
    """squeue, started if executions were open at the last look (base/facts.open_hint_path), or None.

    main() calls it before it loads anything else, so squeue answers while the rest of gear loads and
    the ledger is read. The ledger decides what is open; a wrong hint costs one squeue, a missing one
    the wait (cli/fastpath.py)."""
    from ..base.facts import open_hint_path

    hint = open_hint_path()
    if hint is None or not os.path.exists(hint):
        return None
    from ..slurm import queue

    try:
        return queue.start_query()
    except OSError:
        return None   # no squeue to start: said by whoever needs it


def main(argv: list[str] | None = None) -> int:
    # Everything gear creates is private to its owner unless shared on purpose.
    os.umask(0o077)
    args = sys.argv[1:] if argv is None else argv
    early = ask_squeue_on_hint() if args in LOOKS else None
    # Started with `python3 -S`: site-packages only once a command needs them (base/lazy_site.py).
    from ..base import lazy_site

    lazy_site.install()
    # Without click: workflow tools call sbatch thousands of times (cli/sbatch.py), and a small code
    # directory's `gear run` is the lean submission (cli/run_fast.py). None: click runs it.
    if args[:1] == ["sbatch"]:
        from .sbatch import main as sbatch_main

        answered = sbatch_main(args[1:])
        if answered is not None:
            return answered
    elif args[:1] == ["run"]:
        from .run_fast import main as run_main

        answered = run_main(args[1:])
        if answered is not None:
            return answered
    try:
        from .fastpath import run as run_fast

        code = run_fast(args, early)
    except KeyboardInterrupt:
        from .output import echo

        echo("gear: interrupted", err=True)
        return 130
    if code is not None:
        if argv is None:
            _exit(code)  # the process's own command line, answered: nothing else is left to run
        return code
    from .group import run

    return run(argv)


def _exit(code: int) -> None:
    """End the process now, skipping the interpreter's teardown (2 ms of `gear ls`'s 16, measured).

    Only after the fast path, which holds nothing but its printed output:
    the ledger is closed and no atexit handler, thread or temporary file is
    left. What the streams still buffer is flushed here, as the normal exit
    would; a stream that cannot take it makes the exit code non-zero, as
    Python's own exit does (120).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            code = code or 120
    os._exit(code)


def __getattr__(name: str) -> Any:
    # The click objects, importable from here as before, without importing click at start.
    if name in ("cli", "LazyGroup", "json_option", "load_context", "open_ledger"):
        from . import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
