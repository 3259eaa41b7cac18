"""Datasets ("data warehouses"): named collections of immutable, numbered versions.

    <user>/datasets/<name>/versions/<v>/    a closed version: read-only, by permissions
    <user>/datasets/<name>/incoming/<key>/  an upload in progress, kept so a rerun resumes

An upload is copied into `incoming/` with rsync, read-only as it arrives;
only when rsync has copied everything is it renamed to the next version
number and recorded, with the file and byte totals rsync reports. An
interrupted upload leaves no version, and running the same upload again lets
rsync skip what already arrived.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import GearError, NotFound, UsageError
from ..base.names import check_name, check_text
from ..ledger.db import Execution, Ledger
from ..storage.disk import UserStorage, make_read_only, remove_tree, walk_entries
from . import paths, staging


@dataclass
class VersionRef:
    dataset: str
    version: int | None   # None: the whole dataset


def parse_ref(text: str) -> VersionRef:
    name, at, version = text.partition("@")
    check_name(name, "dataset name")
    if not at:
        return VersionRef(name, None)
    if not version.isdigit() or not version.isascii() or int(version) < 1:
        raise UsageError(f"invalid version {version!r} in {text!r}: versions are numbers 1, 2, 3…")
    return VersionRef(name, int(version))


def create(ledger: Ledger, storage: UserStorage, name: str) -> bool:
    """Create an empty dataset; False if it already exists."""
    check_name(name, "dataset name")
    created = ledger.create_dataset(name)
    (storage.dataset_dir(name) / "versions").mkdir(mode=0o700, parents=True, exist_ok=True)
    return created


def require(ledger: Ledger, name: str) -> None:
    check_name(name, "dataset name")
    if not ledger.dataset_exists(name):
        raise NotFound(f"no dataset {name!r} (create it with `gear data create {name}`)")


def _count(path: Path) -> tuple[int, int]:
    """(bytes, files) below `path`, never following symlinks: files are every entry that is not a
    directory (a symlink to a directory too), as the upload's progress counts them."""
    size = files = 0
    for info, is_dir in walk_entries(str(path)):
        if not is_dir:
            size += info.st_size
            files += 1
    return size, files


def _close_version(ledger: Ledger, storage: UserStorage, name: str, staged: Path, source: str,
                   totals: tuple[int, int] | None = None, read_only_below: bool = False) -> int:
    """Turn a complete staged tree into the next version: rename, read-only, record.

    `totals`: (bytes, files) when the copy already knows them (else a walk
    counts them). `read_only_below`: the copy already took the write bits
    away from everything below the top (rsync --chmod=a-w), so only the top
    is left to do; else a walk does it all.
    """
    size, files = totals if totals is not None else _count(staged)
    if not read_only_below:
        # Before taking the ledger's write lock: a walk of a big tree would
        # hold it longer than another command waits (ledger_rows.BUSY_TIMEOUT_MS).
        make_read_only(staged)
    versions = storage.dataset_dir(name) / "versions"
    versions.mkdir(mode=0o700, parents=True, exist_ok=True)

    def place(number: int) -> None:
        target = storage.version_dir(name, number)
        if target.exists():  # left by a crash before it was recorded: not a version
            remove_tree(target)
        # Moving a directory to another parent needs write permission on it
        # (its ".." changes); a tree copied from a read-only source has none.
        os.chmod(staged, 0o700)
        os.rename(staged, target)
        os.chmod(target, 0o555)   # readable by whoever the dataset's directory lets in

    version = ledger.add_version(name, place, size, files, source)
    _tell_readers(ledger, name)
    return version


def _tell_readers(ledger: Ledger, name: str) -> None:
    """The indexes readers of a shared dataset read (containers/sharing.py) follow its versions."""
    from ..containers import sharing

    sharing.after_dataset_change(ledger, name)


def upload(ledger: Ledger, storage: UserStorage, name: str, paths: list[Path],
           on_progress: Callable[[staging.Progress], None] = lambda p: None) -> tuple[int, staging.Progress]:
    """Upload PATHs as a new version of dataset `name`.

    One directory: its contents become the version. Several paths, or a
    file: each is placed in the version under its own name (two with the
    same name are refused: one would silently replace the other).
    """
    require(ledger, name)
    if not paths:
        raise UsageError("nothing to upload: name at least one PATH")
    resolved = []
    for path in paths:
        check_text(str(path), "the upload path")
        if not path.exists():
            raise UsageError(f"upload path {path} does not exist")
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            # Said before anything is made (rsync would say it as exit 23, after the dataset's directories).
            raise GearError(f"permission denied: you may not read {path}; nothing was uploaded")
        resolved.append(path.resolve())
    if len(resolved) == 1 and resolved[0].is_dir():
        sources = [f"{resolved[0]}/"]
    else:
        sources = [str(p) for p in resolved]
        names = [p.name for p in resolved]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"two upload paths have the same name ({', '.join(twice)}): each PATH is placed "
                             "in the version under its own name; upload their directory, or rename one")
    key = hashlib.sha256("\0".join([name, *map(str, resolved)]).encode()).hexdigest()[:16]
    incoming = storage.incoming_dir(name, key)
    incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
    # One rsync for all sources. A rerun skips every file that arrived whole
    # (a file cut off in the middle is copied again: between local paths rsync
    # copies whole files, so --partial would save nothing). --delete makes the
    # staged tree exactly the sources, whatever an earlier try left.
    # --chmod=a-w,a+rX makes every file and directory read-only (and readable by whoever
    # the dataset's directory lets in, storage/sharing.py) as it arrives
    # (rsync lets itself write into such a directory while it fills it, on a
    # rerun too), so closing the version is a rename, not a walk.
    progress, stats = staging.rsync_with_progress(sources, f"{incoming}/", on_progress, "--delete", "--chmod=a-w,a+rX")
    # The totals of the file list are those of the whole version, also when a
    # rerun sent only part of it; with symlinks or special files in it, a walk.
    version = _close_version(ledger, storage, name, incoming, source="upload: " + ", ".join(map(str, resolved)),
                             totals=stats.totals() if stats else None, read_only_below=True)
    recorded = next(v["files"] for v in ledger.versions(name) if v["version"] == version)
    if progress.files_total != recorded:
        # A symlink --safe-links left out is in rsync's list, not in the version:
        # the last report says what the version holds.
        progress = staging.Progress(progress.bytes_done, progress.percent, recorded, recorded, progress.seconds)
        on_progress(progress)
    return version, progress


def from_output(ledger: Ledger, storage: UserStorage, execution: Execution, dataset: str | None,
                subpath: str | None) -> tuple[str, int]:
    """A new dataset version made from a closed execution's saved working directory.

    `cp --reflink=auto`: where the file system shares blocks (Btrfs, XFS,
    ZFS, bcachefs) no bytes are copied; elsewhere it is a full copy. Never
    hard links: the version is made read-only, and a shared inode would make
    the working directory read-only too. Symlinks that point outside the
    tree are left out.
    """
    name = dataset or execution.container
    check_name(name, "dataset name")
    if execution.is_open:
        raise GearError(f"{execution.id} is still {execution.status}; a dataset can only be made from a closed execution")
    if subpath is not None:
        check_text(subpath, "--from")
    home = Path(execution.workdir)
    source, info = paths.inside(home, subpath, f"the working directory of {execution.id}")
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{execution.id}:{subpath or '/'} is not a directory of the saved working directory")
    new_dataset = not ledger.dataset_exists(name)
    if new_dataset:
        create(ledger, storage, name)
    staged = storage.dataset_dir(name) / "incoming" / f"from-{execution.container}-{execution.number}-{secrets.token_hex(4)}"
    try:
        staged.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging.clone_tree(source, staged)
        version = _close_version(ledger, storage, name, staged,
                                 source=f"from-output: {execution.id}" + (f":{subpath}" if subpath else ""))
    except BaseException:
        _quietly(remove_tree, staged)
        if new_dataset:
            # Made for this version only: a failed copy leaves no empty dataset behind.
            _quietly(ledger.delete_dataset, name)
            _quietly(remove_tree, storage.dataset_dir(name))
        raise
    return name, version


def _quietly(action: Callable[..., Any], *args: Any) -> None:
    """Undo what a failed command made, never hiding the error that made it fail."""
    try:
        action(*args)
    except Exception:
        pass


def open_bindings(ledger: Ledger, name: str, version: int | None) -> list[str]:
    """Open executions that bind `name` (or `name@version`)."""
    users = []
    for execution in ledger.open_executions():
        for binding in execution.bindings:
            if binding.get("kind") != "dataset":
                continue
            bound_name, _, bound_version = binding["source"].partition("@")
            if bound_name == name and (version is None or bound_version == str(version)):
                users.append(execution.id)
    return users


def remove(ledger: Ledger, storage: UserStorage, ref: VersionRef) -> list[int]:
    """Delete a version, or a whole dataset; refused while an open execution binds it."""
    require(ledger, ref.dataset)
    versions = [v["version"] for v in ledger.versions(ref.dataset)]
    if ref.version is not None and ref.version not in versions:
        raise NotFound(f"dataset {ref.dataset!r} has no version {ref.version}")
    busy = open_bindings(ledger, ref.dataset, ref.version)
    if busy:
        what = f"{ref.dataset}@{ref.version}" if ref.version else ref.dataset
        raise GearError(f"{what} is bound by {', '.join(busy)}, which is still queued or running; "
                        "stop it or wait until it ends")
    doomed = [ref.version] if ref.version is not None else versions
    if ref.version is None:
        from ..containers import sharing

        sharing.before_deleting(ledger, "dataset", ref.dataset)   # closed to readers before its files go
    # Move the files aside first, then forget them, then delete: a crash at any
    # point leaves either a recorded version with its files, or only garbage.
    trash = storage.dataset_dir(ref.dataset) / f"trash-{secrets.token_hex(4)}"
    trash.mkdir(mode=0o700)
    for number in doomed:
        target = storage.version_dir(ref.dataset, number)
        if target.exists():
            os.chmod(target, 0o700)
            os.rename(target, trash / str(number))
    if ref.version is None:
        ledger.delete_dataset(ref.dataset)
        remove_tree(storage.dataset_dir(ref.dataset))
    else:
        ledger.delete_version(ref.dataset, ref.version)
        remove_tree(trash)
    _tell_readers(ledger, ref.dataset)
    return doomed


def summaries(ledger: Ledger) -> list[dict[str, Any]]:
    return ledger.dataset_summaries()
