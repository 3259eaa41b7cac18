"""Copies with rsync: code snapshots at submit, downloads of working directories."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .errors import GearError, UsageError
from .runner import CommandFailed, run

IGNORE_FILE = ".gearignore"
COPY_TIMEOUT = 3600.0

# rsync's exit codes that mean "not everything was copied" (never success).
_RSYNC_PARTIAL = {20: "interrupted by a signal", 23: "some files could not be copied",
                  24: "some source files vanished during the copy", 11: "an error in file I/O (is the disk full?)",
                  12: "an error in the data stream"}


def rsync(source: str, target: str, *options: str) -> None:
    """rsync -a with the given options; a partial copy is an error, never success."""
    argv = ["rsync", "-a", "--safe-links", *options, source, target]
    try:
        run(argv, timeout=COPY_TIMEOUT)
    except CommandFailed as exc:
        why = _RSYNC_PARTIAL.get(exc.returncode or -1, f"rsync exited with code {exc.returncode}")
        detail = exc.stderr.strip().splitlines()
        raise GearError(f"copy from {source} to {target} failed: {why}"
                        + (f" ({detail[-1]})" if detail else "")) from None


def snapshot_code(source: Path, target: Path) -> None:
    """Copy the code to upload into `target`.

    A directory is copied whole, less the rsync exclude patterns listed in its
    `.gearignore`; a single file is copied alone. Symlinks that point outside
    the tree are dropped (--safe-links), never followed out of it.
    """
    target.mkdir(mode=0o700, exist_ok=True)
    if source.is_dir():
        options = []
        if (source / IGNORE_FILE).is_file():
            options.append(f"--exclude-from={source / IGNORE_FILE}")
        rsync(f"{source}/", f"{target}/", *options)
    elif source.is_file():
        rsync(str(source), f"{target}/")
    else:
        raise UsageError(f"code path {source} does not exist")


def subpath(base: Path, relative: str | None) -> Path:
    """`base/relative`, refusing absolute paths and `..` that would leave `base`."""
    if not relative:
        return base
    parts = PurePosixPath(relative).parts
    if PurePosixPath(relative).is_absolute() or ".." in parts:
        raise UsageError(f"--from {relative!r} must be a path inside the working directory, without '..'")
    return base.joinpath(*parts)


def download(source: Path, target: Path) -> None:
    """Copy a saved working directory (or a file of it) to `target`."""
    if source.is_symlink() or not source.exists():
        raise UsageError(f"{source} does not exist in the working directory")
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        rsync(f"{source}/", f"{target}/")
    else:
        rsync(str(source), f"{target}/")
