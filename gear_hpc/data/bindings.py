"""Parse and resolve `-d` binding specs (docs/cli.md, Bindings).

    mnist:input0                 latest version of your dataset, read-only
    mnist@3:/hyperai/input/input1  version 3
    alice/mnist@3:input1         another user's dataset, shared with you
    mnist-train/3:input2         execution 3's saved working directory, read-only
    mnist-train/3:/hyperai/home  that working directory copied in, writable (also :/output)
    alice/mnist-train/3:input2   another user's execution, shared with you (also :/hyperai/home)

`X/<digits>` is always an execution; any other `X/Y` is a user's dataset;
`U/X/<digits>` is user U's execution.
Everything is checked before anything is submitted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base.errors import GearError, NotFound, UsageError
from ..base.names import check_name
from ..slurm.apptainer import HOME, INPUT_SLOTS, OUTPUT

if TYPE_CHECKING:
    from ..ledger.db import Ledger
    from ..storage.disk import UserStorage

MAX_INPUTS = len(INPUT_SLOTS)
_SLOT = re.compile(r"(?:/hyperai/input/|/)?input([0-9]+)\Z")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")


@dataclass(frozen=True)
class BindingSpec:
    text: str
    target: str                  # /hyperai/input/inputK or /hyperai/home
    container: str | None = None
    number: int | None = None
    dataset: str | None = None
    version: int | None = None
    owner: str | None = None     # another user's dataset or execution

    @property
    def is_execution(self) -> bool:
        return self.container is not None


@dataclass(frozen=True)
class Binding:
    """A resolved binding, as recorded in the ledger and shown by `gear show`."""

    source: str        # canonical: "mnist@3", "alice/mnist@3" or "mnist-train/3"
    target: str
    read_only: bool
    kind: str          # "dataset" or "execution"
    path: str          # the host path that is bound or copied

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "read_only": self.read_only,
                "kind": self.kind, "path": self.path}


def _bad(text: str, why: str) -> UsageError:
    return UsageError(f"invalid binding {text!r}: {why}")


def parse(text: str) -> BindingSpec:
    """One `-d` spec; a UsageError names the spec and what is wrong with it."""
    source, sep, target = text.partition(":")
    if not sep:
        raise _bad(text, "expected SOURCE:TARGET, for example mnist:input0 or mnist-train/3:/hyperai/home")
    if ":" in target:
        raise _bad(text, "it has more than one ':'")
    if not source:
        raise _bad(text, "the source (before ':') is empty")
    slot = _SLOT.match(target)
    if slot:
        if int(slot.group(1)) >= MAX_INPUTS:
            raise _bad(text, f"input{slot.group(1)} is not a slot; use input0 to input{MAX_INPUTS - 1}")
        resolved_target = INPUT_SLOTS[int(slot.group(1))]
    elif target.rstrip("/") in (HOME, OUTPUT):
        resolved_target = HOME
    else:
        raise _bad(text, f"target {target!r} must be inputK (K = 0-{MAX_INPUTS - 1}), "
                         f"/hyperai/input/inputK, {HOME} or {OUTPUT}")

    try:
        first, slash, rest = source.partition("/")
        if slash and rest.isdigit() and rest.isascii():
            number = int(rest)
            if number < 1:
                raise _bad(text, "execution numbers start at 1")
            return BindingSpec(text, resolved_target, container=check_name(first, "container name"), number=number)
        owner = None
        if resolved_target == HOME and rest.count("/") != 1:
            raise _bad(text, f"only an execution's working directory (CONTAINER/N) can be copied into {HOME}")
        if slash:
            if not _USER.match(first):
                raise _bad(text, f"{first!r} is not a user name")
            owner, source = first, rest
            other, slash2, number_text = rest.partition("/")
            if slash2:
                # USER/C/N: an execution of another user's container.
                if not (number_text.isdigit() and number_text.isascii()) or int(number_text) < 1:
                    raise _bad(text, f"{first}/{rest} is not USER/CONTAINER/N (execution numbers start at 1)")
                return BindingSpec(text, resolved_target, container=check_name(other, "container name"),
                                   number=int(number_text), owner=first)
        name, at, version_text = source.partition("@")
        version = None
        if at:
            if not version_text.isdigit() or not version_text.isascii() or int(version_text) < 1:
                raise _bad(text, f"version {version_text!r} is not a number (versions are 1, 2, 3…)")
            version = int(version_text)
        return BindingSpec(text, resolved_target, dataset=check_name(name, "dataset name"), version=version,
                           owner=owner)
    except UsageError as exc:
        if str(exc).startswith("invalid binding"):
            raise
        raise _bad(text, str(exc)) from None


def parse_all(texts: list[str] | tuple[str, ...]) -> list[BindingSpec]:
    """Parse every spec and check the slots: at most five inputs, each once, one home."""
    specs = [parse(text) for text in texts]
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.target in seen:
            raise _bad(spec.text, f"{spec.target} is already bound by {seen[spec.target]!r}")
        seen[spec.target] = spec.text
    inputs = [s for s in specs if s.target != HOME]
    if len(inputs) > MAX_INPUTS:
        raise UsageError(f"at most {MAX_INPUTS} inputs can be bound; {len(inputs)} were given")
    return specs


def resolve(specs: list[BindingSpec], ledger: Ledger, storage: UserStorage, user: str) -> list[Binding]:
    """Check that every source exists (and is closed) and find its path."""
    from pathlib import Path

    resolved = []
    for spec in specs:
        if spec.owner is not None and spec.owner != user:
            resolved.append(_resolve_shared(spec, storage))
            continue
        if spec.is_execution:
            assert spec.container is not None and spec.number is not None
            execution = ledger.get_execution(spec.container, spec.number)
            if execution is None:
                raise NotFound(f"binding {spec.text!r}: no execution {spec.container}/{spec.number}")
            if execution.is_open:
                raise GearError(f"binding {spec.text!r}: {execution.id} is still {execution.status}; "
                                "only a closed execution's working directory can be bound")
            if not Path(execution.workdir).is_dir():
                raise GearError(f"binding {spec.text!r}: {execution.id} has no saved working directory")
            resolved.append(Binding(execution.id, spec.target, spec.target != HOME, "execution", execution.workdir))
            continue
        assert spec.dataset is not None
        if not ledger.dataset_exists(spec.dataset):
            raise NotFound(f"binding {spec.text!r}: you have no dataset {spec.dataset!r} "
                           f"(create it with `gear data create {spec.dataset}`)")
        version = spec.version or ledger.latest_version(spec.dataset)
        if version is None:
            raise NotFound(f"binding {spec.text!r}: dataset {spec.dataset!r} has no version yet "
                           f"(upload one with `gear data upload {spec.dataset} PATH`)")
        if not any(v["version"] == version for v in ledger.versions(spec.dataset)):
            raise NotFound(f"binding {spec.text!r}: dataset {spec.dataset!r} has no version {version}")
        resolved.append(Binding(f"{spec.dataset}@{version}", spec.target, True, "dataset",
                                str(storage.version_dir(spec.dataset, version))))
    return resolved


def _resolve_shared(spec: BindingSpec, storage: UserStorage) -> Binding:
    """Another user's execution or dataset, through what they share (containers/shared_view.py).

    Checked now with your own permissions; the job binds or copies it with
    them again, so a share taken back before the job starts fails that job
    instead of reaching what is no longer shared (docs/cli.md, Sharing).
    """
    from ..containers import shared_view

    root = str(storage.storage_root)
    assert spec.owner is not None
    try:
        if spec.is_execution:
            assert spec.container is not None and spec.number is not None
            record = shared_view.execution(root, spec.owner, spec.container, spec.number)
            if not os.access(record["workdir"], os.R_OK | os.X_OK):
                raise GearError(f"{record['id']} is not shared with you")
            return Binding(record["id"], spec.target, spec.target != HOME, "execution", record["workdir"])
        assert spec.dataset is not None
        version, path = shared_view.dataset_version_dir(root, spec.owner, spec.dataset, spec.version)
    except GearError as exc:
        raise type(exc)(f"binding {spec.text!r}: {exc}") from None
    return Binding(f"{spec.owner}/{spec.dataset}@{version}", spec.target, True, "dataset", path)
