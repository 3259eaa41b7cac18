"""The project file beside the code: `gear.yaml`, or OpenBayes's `openbayes.yaml` as it is.

What it may say (docs/project-file.md): the container, the compute type
(`resource`), the image (`env` or `image`), data bindings (gear's
`data: [mnist:input0]`, or OpenBayes's `data_binding(s)` / `bindings`), the
command, its parameters and the tuning (`hyper_tuning`, project/tuning.py).
Reading it touches nothing but the file: an OpenBayes dataset reference is
only checked for its shape here, and mapped onto one of the user's datasets
by `binding_texts`, which asks the ledger. Every problem is one line naming
the file, the line and the key.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.names import MAX_NAME
from .nodes import KeyPath, Located, ProjectFileError, dotted, read
from .tuning import Tuning, parse as parse_tuning

if TYPE_CHECKING:
    from ..ledger.db import DatasetLedger

NAMES = ("gear.yaml", "openbayes.yaml")   # looked for in this order
MAX_BYTES = 1 << 20
_BINDING_KEYS = ("data", "data_binding", "data_bindings", "bindings")
KEYS = ("container", "resource", "env", "image", *_BINDING_KEYS, "command", "parameters", "hyper_tuning")
_SLOT = re.compile(r"(?:/hyperai/input/|/)?input([0-4])/?\Z")
_HOME_PATHS = ("/output", "output", "/hyperai/home", "/openbayes/home", "/home")
# OpenBayes's references: OWNER/DATASET/VERSION, and an execution's output OWNER/jobs/ID/output.
_OPENBAYES_DATASET = re.compile(r"([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/([0-9]+)\Z")
_OPENBAYES_JOB = re.compile(r"[A-Za-z0-9_.-]+/jobs/[A-Za-z0-9_.-]+(?:/.*)?\Z")


@dataclass(frozen=True)
class DataRef:
    """One binding as the file writes it, with its slot already in gear's form."""

    source: str          # as written: mnist, mnist@3, C/N, or OpenBayes's OWNER/NAME/VERSION
    target: str          # input0 … input4, or /hyperai/home
    key: str             # where it is, for errors: data_binding[0].data
    line: int
    openbayes: tuple[str, int] | None = None   # (dataset name, version) an OpenBayes reference maps to


@dataclass(frozen=True)
class ProjectFile:
    path: Path
    container: str | None = None
    resource: str | None = None
    image: str | None = None
    data: tuple[DataRef, ...] = ()
    command: tuple[str, ...] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tuning: Tuning | None = None
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    @property
    def is_openbayes(self) -> bool:
        return self.path.name == "openbayes.yaml"

    def error(self, where: KeyPath, why: str) -> ProjectFileError:
        return Located(self.path, None, self.lines).error(where, why)


def find(directory: Path) -> Path | None:
    """The project file of a code directory: gear.yaml, else openbayes.yaml, else None."""
    for name in NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def load(path: Path) -> ProjectFile:
    """Read and check a project file; ProjectFileError (one line: file, line, key) for anything wrong."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ProjectFileError(f"{path.name}: cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ProjectFileError(f"{path.name}: larger than {MAX_BYTES >> 20} MiB; a project file is a few lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ProjectFileError(f"{path.name}:{line}: not UTF-8 text") from None
    return parse(path, text)


def parse(path: Path, text: str) -> ProjectFile:
    """The project file `path` holding `text` (load() reads it)."""
    doc = read(path, text)
    top = doc.value
    if top is None or top == {}:
        return ProjectFile(path, lines=doc.lines)
    if not isinstance(top, dict):
        raise doc.error((), "expected a mapping of keys (resource, env, command, …) at the top level")
    for key in top:
        if key not in KEYS:
            raise doc.error((key,), f"unknown key; a project file's keys are {', '.join(KEYS)}")
    if "env" in top and "image" in top:
        raise doc.error(("image",), "env and image name the same thing; keep one")
    given = [key for key in _BINDING_KEYS if key in top]
    if len(given) > 1:
        raise doc.error((given[1],), f"{given[0]} and {given[1]} both bind data; keep one")
    image_key = "image" if "image" in top else "env"
    return ProjectFile(
        path,
        container=_container(doc, top.get("container")),
        resource=_text(doc, ("resource",), top.get("resource")),
        image=_text(doc, (image_key,), top.get(image_key)),
        data=_bindings(doc, given[0]) if given else (),
        command=_command(doc, top.get("command")),
        parameters=_parameters(doc, top.get("parameters")),
        tuning=parse_tuning(doc, ("hyper_tuning",)),
        lines=doc.lines,
    )


def argument(name: str, value: Any) -> str:
    """`--name=value`, as a program receives a parameter on its command line (and OpenBayes passes it)."""
    shown = value if isinstance(value, str) else json.dumps(value)
    return f"--{name}={shown}"


def command_with_parameters(command: tuple[str, ...], parameters: dict[str, Any]) -> list[str]:
    """The file's command with its parameters appended as `--name=value` (inside `bash -c` when it is one)."""
    extra = [argument(name, value) for name, value in parameters.items()]
    if len(command) == 3 and command[:2] == ("bash", "-c") and extra:
        return ["bash", "-c", " ".join([command[2], *map(shlex.quote, extra)])]
    return [*command, *extra]


def _text(doc: Located, where: KeyPath, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise doc.error(where, f"{value!r} is not a name (text on one line)")
    return value.strip()


def _container(doc: Located, value: Any) -> str | None:
    from ..base.errors import UsageError
    from ..base.names import check_name

    text = _text(doc, ("container",), value)
    if text is None:
        return None
    try:
        return check_name(text, "container name")
    except UsageError as exc:
        raise doc.error(("container",), str(exc)) from None


def _command(doc: Located, value: Any) -> tuple[str, ...] | None:
    """A list is the argv; a string is split as a shell would, or run by `bash -c` if it uses the shell's syntax."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list):
        if not all(isinstance(arg, (str, int, float)) and not isinstance(arg, bool) for arg in value):
            raise doc.error(("command",), "expected text or a list of arguments")
        argv = tuple(str(arg) for arg in value)
    elif isinstance(value, str):
        if "\n" in value.strip() or "\x00" in value:
            raise doc.error(("command",), "one line, please (for several commands: a script, or `a && b`)")
        try:
            argv = ("bash", "-c", value.strip()) if _uses_shell(value) else tuple(shlex.split(value))
        except ValueError as exc:
            raise doc.error(("command",), f"cannot split {value!r} into arguments: {exc}") from None
    else:
        raise doc.error(("command",), f"{value!r} is not a command (text, or a list of arguments)")
    if not all(arg.isprintable() for arg in argv):
        raise doc.error(("command",), "it contains a control character")
    return argv or None


def _uses_shell(text: str) -> bool:
    """Whether a command line needs a shell: an operator (; && | > …) outside quotes, or $ and ` expansions."""
    if "$" in text or "`" in text:
        return True
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return any(token and all(ch in "();<>|&" for ch in token) for token in lexer)


def _parameters(doc: Located, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(("parameters",), "expected a mapping of names to values (lr: 0.01)")
    for name, item in value.items():
        if not re.match(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z", name):
            raise doc.error(("parameters", name), "not a parameter name (a letter or '_', then letters, digits, "
                                                  "'_', '-', '.')")
        try:
            json.dumps(item)
        except (TypeError, ValueError):
            raise doc.error(("parameters", name), f"{item!r} is not a value gear_params.json can hold") from None
        if isinstance(item, str) and not item.isprintable():
            raise doc.error(("parameters", name), "it contains a control character")
    return dict(value)


def _bindings(doc: Located, key: str) -> tuple[DataRef, ...]:
    items = doc.value[key]
    if items is None:
        return ()
    if not isinstance(items, list):
        raise doc.error((key,), "expected a list of bindings (- data: mnist  path: /input0, or - mnist:input0)")
    refs = []
    for i, item in enumerate(items):
        where: KeyPath = (key, i)
        if isinstance(item, str):
            source, sep, target = item.rpartition(":")
            if not sep or not source:
                raise doc.error(where, f"{item!r}: expected SOURCE:PATH, for example mnist:/input0")
            source_where = target_where = where
        elif isinstance(item, dict):
            for name in item:
                if name not in ("data", "path"):
                    raise doc.error(where + (name,), "unknown key; a binding has data and path")
            data, path = item.get("data"), item.get("path")
            source_where, target_where = where + ("data",), where + ("path",)
            if not isinstance(data, str) or not data:
                raise doc.error(source_where, "missing: what to bind (a dataset such as mnist@1, or C/N)")
            if not isinstance(path, str) or not path:
                raise doc.error(target_where, "missing: where to bind it (/input0 … /input4, or /output)")
            source, target = data, path
        else:
            raise doc.error(where, "expected {data: …, path: …} or SOURCE:PATH")
        refs.append(_ref(doc, source.strip(), target.strip(), source_where, target_where))
    return tuple(refs)


def _ref(doc: Located, source: str, target: str, source_where: KeyPath, target_where: KeyPath) -> DataRef:
    slot = _SLOT.match(target)
    if slot:
        gear_target = f"input{slot.group(1)}"
    elif target.rstrip("/") in _HOME_PATHS:
        gear_target = "/hyperai/home"
    else:
        raise doc.error(target_where, f"{target!r} is not a place to bind: /input0 … /input4 (= /hyperai/input/"
                                      "input0 …) or /output (= /hyperai/home)")
    if _OPENBAYES_JOB.match(source):
        raise doc.error(source_where, f"{source!r} is an OpenBayes execution's output, which gear cannot reach; "
                                      "bind one of your executions instead (CONTAINER/N)")
    openbayes = _OPENBAYES_DATASET.match(source)
    mapped = None
    if openbayes:
        name, version = openbayes.group(2).lower(), int(openbayes.group(3))
        if len(name) > MAX_NAME or version < 1:
            raise doc.error(source_where, f"{source!r} cannot name a dataset of yours")
        mapped = (name, version)
    else:
        from ..base.errors import UsageError
        from ..data.bindings import parse as parse_binding

        try:
            parse_binding(f"{source}:{gear_target}")
        except UsageError as exc:
            raise doc.error(source_where, str(exc)) from None
    return DataRef(source, gear_target, dotted(source_where), doc.line(source_where), mapped)


def binding_texts(project: ProjectFile, ledger: DatasetLedger) -> list[str]:
    """The file's bindings as `gear run -d` specs; an OpenBayes reference OWNER/NAME/V becomes your dataset
    NAME@V (lower case), and is an error naming the line when you have no such dataset or version."""
    texts = []
    for ref in project.data:
        source = ref.source
        if ref.openbayes is not None:
            name, version = ref.openbayes
            where = f"{project.path.name}:{ref.line}: {ref.key}"
            if not re.match(r"[a-z0-9][a-z0-9._-]*\Z", name) or not ledger.dataset_exists(name):
                raise ProjectFileError(
                    f"{where}: {source!r} is an OpenBayes dataset, which gear reads as your dataset {name!r} "
                    f"version {version}, and you have none: make it one (gear data create {name}; gear data "
                    f"upload {name} DIR) or write one of yours there (data: mnist@1)")
            if not any(v["version"] == version for v in ledger.versions(name)):
                raise ProjectFileError(
                    f"{where}: {source!r} is read as your dataset {name}@{version}, but {name!r} has no version "
                    f"{version} (see gear data versions {name}); write the version you mean ({name}@N)")
            source = f"{name}@{version}"
        texts.append(f"{source}:{ref.target}")
    return texts
