"""What one execution is asked to be (RunRequest): every door builds one, executions/lifecycle.py submits it.

A plain class, not a dataclass: `gear sbatch` and `gear run` build one on
the lean submission path (executions/quick_submit.py), where importing
dataclasses (with inspect, re and typing) would cost more than sbatch itself.
"""

from __future__ import annotations

# Annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .workspace_job import Workspace

_FIELDS = ("command", "code", "container", "compute_type", "image", "params", "message", "bindings", "mode",
           "generated_files", "workspace", "parent", "home_layer", "code_uploaded", "code_unnamed", "sbatch_options")


class RunRequest:
    """What to run, where and with what; the fields, their defaults and their comparison are a dataclass's."""

    __slots__ = _FIELDS

    def __init__(self, command: list[str], code: Path, container: str | None = None, compute_type: str | None = None,
                 image: str | None = None, params: dict[str, Any] | None = None, message: str | None = None,
                 bindings: list[str] | None = None, mode: str = "script",
                 generated_files: dict[str, str] | None = None,   # relative path in code -> text
                 workspace: Workspace | None = None,   # mode jupyter: what workspaces.build_request() prepared
                 parent: str | None = None,            # the execution this one continues (C/N)
                 home_layer: bool = False,             # start from the parent's working directory (gear continue)
                 # The code is uploaded by this command (not the parent's, reused by
                 # continue): only then can an upload be ignored, and said so.
                 code_uploaded: bool = True,
                 # The code is the current directory, not named with --code: refused above
                 # site.code_limit, so that `gear run` from $HOME does not upload all of it.
                 code_unnamed: bool = False,
                 # sbatch options given by the user (`gear sbatch`), overriding the compute type's #SBATCH lines.
                 sbatch_options: list[str] | None = None) -> None:
        self.command = command
        self.code = code
        self.container = container
        self.compute_type = compute_type
        self.image = image
        self.params: dict[str, Any] = {} if params is None else params
        self.message = message
        self.bindings: list[str] = [] if bindings is None else bindings
        self.mode = mode
        self.generated_files: dict[str, str] = {} if generated_files is None else generated_files
        self.workspace = workspace
        self.parent = parent
        self.home_layer = home_layer
        self.code_uploaded = code_uploaded
        self.code_unnamed = code_unnamed
        self.sbatch_options: list[str] = [] if sbatch_options is None else sbatch_options

    def log_copies(self) -> tuple[bool, bool]:
        """(stdout, stderr): what sbatch's -o/-e send to the user's files instead of gear's log, so the
        job script copies it there too (`gear logs`). -o takes both streams (unless -e names another
        file for stderr), -e stderr only."""
        names = {option.partition("=")[0] for option in self.sbatch_options}
        return "--output" in names, "--output" in names or "--error" in names

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None   # type: ignore[assignment]  # mutable, as a dataclass without frozen

    def __repr__(self) -> str:
        return "RunRequest(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS) + ")"
