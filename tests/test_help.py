"""Every command has help with an example, and is documented in docs/cli.md."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gear_hpc.cli import COMMANDS, cli

DOCS = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()


def _all_commands():
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        yield [name], command
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield [name, sub], command.get_command(ctx, sub)


@pytest.mark.parametrize("path,command", list(_all_commands()), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_command_has_help_and_docs(path, command):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert command.help and command.help.strip()
    if len(path) == 1:
        assert "Example" in command.help, f"gear {path[0]} help has no example"
        assert f"`gear {path[0]}" in DOCS or f"gear {path[0]}" in DOCS, f"gear {path[0]} is not in docs/cli.md"
