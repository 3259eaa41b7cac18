"""What a command's options and the project file make together: the options win (docs/project-file.md).

- compute type, image, container: the option if given, else the file's;
- data: the file's bindings, each replaced by an option binding the same slot;
- parameters: the file's, each replaced by a --param of the same name;
- command: the one after `--` runs as given (gear run's rule); the file's
  command gets the parameters appended as `--name=value`, as OpenBayes
  passes them. An `openbayes.yaml` project also gets `openbayes_params.json`
  beside `gear_params.json`, which OpenBayes programs read;
- OpenBayes's paths: in an `openbayes.yaml`'s command and parameter values,
  `/input0` … `/input4` (a whole argument, or after `=`) are read as gear's
  `/hyperai/input/input0` …, as its data bindings are. (`/output` is the same
  in both layouts.) A program that writes the path in its own code must use
  gear's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .file import ProjectFile, binding_texts, command_with_parameters, find, load

if TYPE_CHECKING:
    from ..storage.disk import UserStorage

_OPENBAYES_INPUT = re.compile(r"""(\A|[=\s"'])/input([0-4])(?=[/\s"']|\Z)""")


@dataclass(frozen=True)
class Options:
    """A command's options once the project file is taken into account."""

    project: ProjectFile | None
    container: str | None
    compute_type: str | None
    image: str | None
    bindings: list[str]
    params: dict[str, Any]
    command: list[str]
    generated_files: dict[str, str] = field(default_factory=dict)


def project_for(code: Path, named: Path | None = None) -> ProjectFile | None:
    """The named project file, else the one in the code directory (none for a single file)."""
    if named is not None:
        if not named.is_file():
            from .nodes import ProjectFileError

            raise ProjectFileError(f"project file {named} does not exist")
        return load(named)
    found = find(code) if code.is_dir() else None
    return None if found is None else load(found)


def merge(project: ProjectFile | None, storage: UserStorage | None, *, container: str | None,
          compute_type: str | None, image: str | None, bindings: list[str] | tuple[str, ...],
          params: dict[str, Any], command: list[str] | tuple[str, ...]) -> Options:
    """The options `gear run` (and `gear jupyter`, which takes no command) uses; `storage` is asked only
    when the file names an OpenBayes dataset (the ledger knows the user's datasets)."""
    if project is None:
        return Options(None, container, compute_type, image, list(bindings), dict(params), list(command))
    file_params = project.parameters
    if project.is_openbayes:
        file_params = {name: _gear_path(value) if isinstance(value, str) else value
                       for name, value in file_params.items()}
    merged_params = {**file_params, **params}
    if command:
        argv = list(command)
    elif project.command:
        file_command = project.command
        if project.is_openbayes:
            file_command = tuple(_gear_path(arg) for arg in file_command)
        argv = command_with_parameters(file_command, merged_params)
    else:
        argv = []
    generated = {}
    if project.is_openbayes and merged_params:
        generated["openbayes_params.json"] = json.dumps(merged_params, indent=2) + "\n"
    return Options(project, container or project.container, compute_type or project.resource,
                   image or project.image, _bindings(project, storage, bindings), merged_params, argv, generated)


def _gear_path(text: str) -> str:
    """OpenBayes's /inputK as gear's /hyperai/input/inputK (--input=/input0, /input1/train.csv)."""
    return _OPENBAYES_INPUT.sub(lambda m: f"{m.group(1)}/hyperai/input/input{m.group(2)}", text)


def _bindings(project: ProjectFile, storage: UserStorage | None, given: list[str] | tuple[str, ...]) -> list[str]:
    from ..data.bindings import parse

    if not project.data:
        return list(given)
    if any(ref.openbayes is not None for ref in project.data):
        assert storage is not None
        from ..ledger.db import Ledger

        storage.ensure()
        with Ledger(storage.ledger_path) as ledger:
            texts = binding_texts(project, ledger)
    else:
        texts = [f"{ref.source}:{ref.target}" for ref in project.data]
    taken = {parse(text).target for text in given}
    return [text for text in texts if parse(text).target not in taken] + list(given)
