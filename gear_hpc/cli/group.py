"""The click group of `gear`, and what the click commands share.

Imported only when the fast path (fastpath.py) declines: importing click
costs more than the whole of a fast `gear ls`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from .. import __version__
from ..base.errors import one_line
from . import COMMANDS
from .output import echo

if TYPE_CHECKING:
    from ..ledger.db import Ledger
    from ..site.model import Site
    from ..storage.disk import UserStorage

F = TypeVar("F", bound=Callable[..., object])


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        command: click.Command = getattr(module, attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="gear-hpc", message="%(prog)s %(version)s")
def cli() -> None:
    """Run Gear-style executions on a Slurm cluster.

    Each execution runs a site image on a named compute type, with its code
    and working directory at /hyperai/home (= /output) and read-only inputs
    at /hyperai/input/input0-4. Every execution is kept in your ledger.

    \b
    Examples:
      gear types
      gear run -r gpu-1 -e python -- python3 train.py --epochs 3
      gear status
      gear logs mnist-train/1 -f
    """


def run(argv: list[str] | None = None) -> int:
    """Run one command through click; its exit code."""
    try:
        # Without standalone mode, click returns (not raises) a command's Exit code.
        result = cli.main(args=argv, prog_name="gear", standalone_mode=False)
        if isinstance(result, int):
            return result
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        echo("gear: aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        echo("gear: interrupted", err=True)
        return 130
    except Exception as exc:
        # GearError and everything else (PermissionError, a locked or damaged
        # ledger, a full disk…): one line naming the problem, never a traceback.
        if os.environ.get("GEAR_TRACEBACK"):
            raise
        return report(exc)
    return 0


def report(exc: BaseException) -> int:
    """Print `exc` as one `gear: error: …` line (errors.one_line); its exit code."""
    message, code = one_line(exc)
    echo(f"gear: error: {message}", err=True)
    return code


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def follow_option(func: F) -> F:
    return click.option("-f", "--follow", is_flag=True, help="Follow the status and log until the execution ends.")(func)


def execution_options(*, container: str | None = None,
                      resource: str = "Compute type (see `gear types`).",
                      env: str = "Image (see `gear images`).",
                      data: str = "Bind data (repeatable): mnist:input0, mnist@3:input1, mnist-train/3:input2, "
                                  "mnist-train/3:/hyperai/home (copied in, writable).",
                      code: str, param: str | None = None,
                      message: str = "A note to remember this execution by.") -> Callable[[F], F]:
    """The options that start an execution (`gear run`, `gear continue`, `gear jupyter`), declared once:
    -c -r -e -d --code --param -m, in that order. Each command may word a help text its own way; an
    option whose text is None (-c, --param) is left out."""
    options = [] if container is None else [click.option("-c", "--container", help=container)]
    options += [
        click.option("-r", "--resource", "compute_type", metavar="TYPE", help=resource),
        click.option("-e", "--env", "image", metavar="IMAGE", help=env),
        click.option("-d", "--data", "bindings", multiple=True, metavar="BINDING", help=data),
        click.option("--code", type=click.Path(path_type=Path, readable=False), default=None, help=code),
    ]
    if param is not None:
        options.append(click.option("--param", "params", multiple=True, metavar="K=V", help=param))
    options.append(click.option("-m", "--message", help=message))

    def decorate(func: F) -> F:
        for option in reversed(options):  # click lists options in the order their decorators are written
            func = option(func)
        return func

    return decorate


def load_context() -> tuple[Site, UserStorage]:
    """The site configuration and the calling user's storage."""
    from ..site import loading as site
    from ..storage.disk import UserStorage

    loaded = site.load()
    return loaded, UserStorage(loaded.storage_root)


def open_ledger(storage: UserStorage) -> Ledger:
    from ..ledger.db import Ledger

    storage.ensure()
    return Ledger(storage.ledger_path)
