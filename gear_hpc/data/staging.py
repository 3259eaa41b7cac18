"""Copies with rsync: code snapshots at submit, downloads of working directories."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import GearError, UsageError
from ..base.runner import CommandFailed, run
from .paths import operand

IGNORE_FILE = ".gearignore"
COPY_TIMEOUT = 3600.0

# rsync's exit codes that mean "not everything was copied" (never success).
_RSYNC_PARTIAL = {20: "interrupted by a signal", 23: "some files could not be copied",
                  24: "some source files vanished during the copy", 11: "an error in file I/O (is the disk full?)",
                  12: "an error in the data stream"}


def rsync(source: str, target: str, *options: str) -> None:
    """rsync -a with the given options; a partial copy is an error, never success."""
    # "--": the operands are never options, whatever a user's path looks like (`-rf`).
    argv = ["rsync", "-a", "--safe-links", *options, "--", source, target]
    try:
        run(argv, timeout=COPY_TIMEOUT)
    except CommandFailed as exc:
        raise _copy_error(source, target, exc) from None


@dataclass
class Progress:
    """One progress update of an rsync copy (from --info=progress2)."""

    bytes_done: int
    percent: int
    files_done: int | None
    files_total: int | None
    seconds: float

    @property
    def bytes_per_second(self) -> float:
        return self.bytes_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def files_per_second(self) -> float:
        return (self.files_done or 0) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class SourceStats:
    """rsync's --stats about the whole file list of a copy (not only what this run sent).

    `entries` counts the list by kind: reg, dir, link, dev, special. On a
    resumed copy these are still the totals of everything the target holds.
    """

    entries: dict[str, int]
    size: int

    def files(self) -> int:
        """Entries of the list that are not directories."""
        return sum(count for kind, count in self.entries.items() if kind != "dir")

    def totals(self) -> tuple[int, int] | None:
        """(bytes, files) of the copied tree, or None when the list alone cannot say.

        The list is the *source's*: a symlink that --safe-links drops is in
        it, so is a device rsync could not create. A list of regular files and
        directories only is exactly what arrived.
        """
        if set(self.entries) - {"reg", "dir"}:
            return None
        return self.size, self.entries.get("reg", 0)


# "    1234567  45%   12.34MB/s    0:00:10 (xfr#12, to-chk=100/200)" (with --no-h; "1,234,567" without)
_PROGRESS = re.compile(r"\s*([\d,]+)\s+(\d+)%\s+\S+\s+\S+(?:\s+\(xfr#\d+, (?:to|ir)-chk=(\d+)/(\d+)\))?")
# --stats, with --no-h: "Number of files: 20022 (reg: 20001, dir: 21)", "Total file size: 577830912 bytes"
_STATS_FILES = re.compile(r"Number of files: (\d+)(?: \((.*)\))?$")
_STATS_SIZE = re.compile(r"Total file size: (\d+) bytes")
# A progress report at most this often: rsync prints a line per file, and
# the bar need not be redrawn 20,000 times for 20,000 small files.
REPORT_EVERY = 0.1


def parse_progress(line: str, seconds: float) -> Progress | None:
    match = _PROGRESS.match(line)
    if not match:
        return None
    remaining, total = match.group(3), match.group(4)
    files_total = int(total) if total else None
    files_done = files_total - int(remaining) if files_total is not None and remaining else None
    return Progress(int(match.group(1).replace(",", "")), int(match.group(2)), files_done, files_total, seconds)


def parse_stats(lines: list[str]) -> SourceStats | None:
    """The file list's totals from rsync's --stats lines (printed with --no-h); None if absent."""
    entries: dict[str, int] | None = None
    size = None
    for line in lines:
        files = _STATS_FILES.match(line)
        if files:
            entries = {kind: int(count) for kind, count in re.findall(r"(\w+): (\d+)", files.group(2) or "")}
        total = _STATS_SIZE.match(line)
        if total:
            size = int(total.group(1))
    if entries is None or size is None:
        return None
    return SourceStats(entries, size)


def rsync_with_progress(sources: Sequence[str], target: str, on_progress: Callable[[Progress], None],
                        *options: str) -> tuple[Progress, SourceStats | None]:
    """rsync -a of `sources` into `target` with progress reports.

    Returns the last progress report (what this run sent) and rsync's
    --stats about the whole file list (None if rsync printed none).
    """
    import time

    from ..base.runner import stream

    started = time.monotonic()
    due = started
    last_line = ""
    stats_lines: list[str] = []

    def handle(piece: str) -> None:
        # Called for every line rsync prints (one per file): keep it cheap,
        # parse only when a report is due, and the last line at the end.
        nonlocal due, last_line
        if piece[:1].isalpha():  # --stats and the summary, after the copy
            stats_lines.append(piece)
            return
        last_line = piece
        now = time.monotonic()
        if now >= due:
            progress = parse_progress(piece, now - started)
            if progress is not None:
                due = now + REPORT_EVERY
                on_progress(progress)

    # Incremental recursion (rsync's default) keeps pace with plain rsync -a;
    # --no-inc-recursive gives exact totals up front but cost 2x on ext4 here.
    # --no-h: numbers as plain digits whatever the locale (it picks "," or "."
    # to group digits), so that --stats parses.
    argv = ["rsync", "-a", "--safe-links", "--info=progress2", "--stats", "--no-h", *options, "--", *sources, target]
    try:
        stream(argv, handle, timeout=COPY_TIMEOUT)
    except CommandFailed as exc:
        raise _copy_error(", ".join(sources), target, exc) from None
    seconds = time.monotonic() - started
    last = parse_progress(last_line, seconds) or Progress(0, 0, 0, 0, seconds)
    stats = parse_stats(stats_lines)
    if stats is not None:
        # rsync's to-chk counts every entry of the file list, directories too
        # (the top one included: 3001 files show as 3002): the last report
        # counts files, as the version records them (SourceStats.totals).
        files = stats.files()
        last = Progress(last.bytes_done, last.percent, files, files, seconds)
    on_progress(last)
    return last, stats


def _copy_error(source: str, target: str, exc: CommandFailed) -> GearError:
    why = _RSYNC_PARTIAL.get(exc.returncode or -1, f"rsync exited with code {exc.returncode}")
    if exc.timed_out:
        why = "it timed out"
    detail = exc.stderr.strip().splitlines()
    return GearError(f"copy from {source} to {target} failed: {why}" + (f" ({detail[-1]})" if detail else ""))


def snapshot_code(source: Path, target: Path, on_progress: Callable[[Progress], None] | None = None) -> None:
    """Copy the code to upload into `target`.

    A directory is copied whole, less the rsync exclude patterns listed in its
    `.gearignore`; a single file is copied alone. Symlinks that point outside
    the tree are dropped (--safe-links), never followed out of it.
    `on_progress` hears how the copy goes (rsync_with_progress), if given.
    """
    target.mkdir(mode=0o700, exist_ok=True)
    source = Path(operand(source))   # a relative `--code -x` is never an option to rsync
    if source.is_dir():
        sources, options = [f"{source}/"], _ignore_options(source)
    elif source.is_file():
        sources, options = [str(source)], []
    else:
        raise UsageError(f"code path {source} does not exist")
    if source.is_dir():
        copied = _copy_small(source, target)
        if copied is not None:
            if on_progress is not None:
                on_progress(Progress(copied[1], 100, copied[0], copied[0], 0.0))
            return
    if on_progress is None:
        rsync(*sources, f"{target}/", *options)
    else:
        rsync_with_progress(sources, f"{target}/", on_progress, *options)


SMALL_FILES, SMALL_BYTES = 32, 4 << 20


def _copy_small(source: Path, target: Path) -> tuple[int, int] | None:
    """A directory of a few small regular files (no subdirectory, link, special file or .gearignore) is
    copied here as rsync -a copies it (bytes, modes, times; the directory's mode and times too), without
    starting rsync, which was most of the cost of submitting small code. Returns (files, bytes) copied;
    None: leave it to rsync."""
    import stat

    entries: list[tuple[os.DirEntry[str], os.stat_result]] = []
    with os.scandir(source) as listing:
        for entry in listing:
            if len(entries) >= SMALL_FILES or entry.name == IGNORE_FILE or not entry.is_file(follow_symlinks=False):
                return None
            entries.append((entry, entry.stat(follow_symlinks=False)))
    size = sum(info.st_size for _, info in entries)
    if size > SMALL_BYTES:
        return None
    for entry, info in entries:
        copy = target / entry.name
        with open(entry.path, "rb") as reading, open(copy, "xb") as writing:
            writing.write(reading.read())
        os.chmod(copy, stat.S_IMODE(info.st_mode))
        os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
    info = os.stat(source)
    os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    return len(entries), size


def _ignore_options(source: Path) -> list[str]:
    return [f"--exclude-from={source / IGNORE_FILE}"] if (source / IGNORE_FILE).is_file() else []


@dataclass
class CodeCount:
    """What an upload of code holds, counted up to a limit."""

    files: int
    size: int
    over: bool   # the count stopped at the limit: there is at least this much


def count_code(source: Path, max_files: int, max_bytes: int) -> CodeCount:
    """Files and bytes `snapshot_code(source)` would copy, stopping as soon as
    either limit is passed (a home directory is never walked whole to refuse it).

    rsync lists what it would copy, .gearignore and --safe-links included, so
    the count is the upload's own.
    """
    source = Path(operand(source))
    if not source.is_dir():
        size = source.stat().st_size if source.is_file() else 0
        return CodeCount(1, size, size > max_bytes or max_files < 1)
    files = size = 0
    argv = ["rsync", "-r", "-l", "--safe-links", "--list-only", "--no-h", *_ignore_options(source), "--",
            f"{source}/"]

    class Enough(Exception):
        pass

    def handle(line: str) -> None:
        nonlocal files, size
        # "-rw-r--r--          1234 2026/12/01 10:00:00 name": directories are not files
        fields = line.split(None, 2)
        if len(fields) < 2 or line[:1] == "d" or not fields[1].isdigit():
            return
        files += 1
        size += int(fields[1])
        if files > max_files or size > max_bytes:
            raise Enough

    from ..base.runner import stream

    try:
        stream(argv, handle, timeout=COPY_TIMEOUT)
    except Enough:
        return CodeCount(files, size, True)
    except CommandFailed as exc:
        raise _copy_error(str(source), "the upload", exc) from None
    return CodeCount(files, size, False)


def download(source: Path, target: Path) -> None:
    """Copy `source` (a file or directory of a saved working directory, from paths.inside) to `target`.

    The copy lands in a temporary directory beside `target` and is moved into
    place only once complete, so a failed download leaves nothing behind. Into
    an existing directory, the copied entries are moved in (files replace
    files); an entry whose kind differs (a file where a directory is) is
    refused before anything moves.
    """
    import shutil
    import tempfile

    target = Path(operand(target))   # `-t -rf` is the directory ./-rf, never an option to rsync
    if target.is_symlink() and not target.is_dir() or target.exists() and not target.is_dir():
        raise UsageError(f"download target {target} exists and is not a directory")
    created = _missing_ancestor(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".gear-download-", dir=target.parent))
    try:
        # The saved working directory may be read-only; the user's copy should not be.
        if source.is_dir():
            rsync(f"{operand(source)}/", f"{temporary}/", "--chmod=u+w")
        else:
            rsync(operand(source), f"{temporary}/", "--chmod=u+w")
        if target.exists():
            _move_into(temporary, target)
        else:
            os.rename(temporary, target)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _missing_ancestor(path: Path) -> Path | None:
    """The topmost directory of `path` that does not exist yet (what mkdir -p would create)."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def _move_into(source: Path, target: Path) -> None:
    """Move the tree `source` into the existing directory `target`: directories merge, files replace."""
    moves: list[tuple[Path, Path]] = []

    def plan(src: Path, dst: Path) -> None:
        for entry in sorted(os.listdir(src)):
            s, d = src / entry, dst / entry
            if not os.path.lexists(d):
                moves.append((s, d))
            elif s.is_dir() and not s.is_symlink():
                if d.is_symlink() or not d.is_dir():
                    raise UsageError(f"cannot download {entry} into {d}: it exists and is not a directory; "
                                     "nothing was copied")
                plan(s, d)
            elif d.is_dir() and not d.is_symlink():
                raise UsageError(f"cannot download the file {entry} over the directory {d}; nothing was copied")
            else:
                moves.append((s, d))

    plan(source, target)   # every conflict is found before anything moves
    for s, d in moves:
        os.replace(s, d)


def collisions(code: Path, workdir: Path) -> list[str]:
    """Relative paths of uploaded files that differ from the same path in `workdir`.

    The Gear rule: the working directory's file is kept and the upload is
    ignored; gear lists these before it submits so nobody is surprised. An
    upload identical to what is there (same bytes, or a symlink to the same
    place) loses nothing and is not listed.
    """
    found = []
    for directory, _subdirs, files in os.walk(code):
        relative = Path(directory).relative_to(code)
        for name in files:
            there = workdir / relative / name
            if os.path.lexists(there) and not _same(Path(directory) / name, there):
                found.append(str(relative / name) if str(relative) != "." else name)
    return sorted(found)


def _same(uploaded: Path, there: Path) -> bool:
    """Whether the file `there` holds what `uploaded` does (read only; `there` may be sealed)."""
    import filecmp
    import stat

    try:
        a, b = os.lstat(uploaded), os.lstat(there)
        if stat.S_ISLNK(a.st_mode) or stat.S_ISLNK(b.st_mode):
            return stat.S_ISLNK(a.st_mode) and stat.S_ISLNK(b.st_mode) and os.readlink(uploaded) == os.readlink(there)
        if not (stat.S_ISREG(a.st_mode) and stat.S_ISREG(b.st_mode)) or a.st_size != b.st_size:
            return False
        return filecmp.cmp(uploaded, there, shallow=False)
    except OSError:
        return False   # what cannot be read is not known to be the same: listed


def clone_tree(source: Path, target: Path) -> None:
    """Copy a tree with `cp --reflink=auto` (block sharing where the file system
    has it), then drop symlinks that point outside it: never followed, never kept."""
    try:
        run(["cp", "-a", "--reflink=auto", "--no-target-directory", "--", operand(source), operand(target)],
            timeout=COPY_TIMEOUT)
    except CommandFailed as exc:
        raise GearError(f"copy from {source} to {target} failed: {exc.stderr.strip() or exc.returncode}") from None
    drop_escaping_links(target)


def drop_escaping_links(root: Path) -> list[str]:
    """Remove symlinks below `root` whose target resolves outside `root`."""
    removed = []
    real_root = os.path.realpath(root)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if target != real_root and not target.startswith(real_root + os.sep):
                    os.unlink(path)
                    removed.append(os.path.relpath(path, root))
    return removed
