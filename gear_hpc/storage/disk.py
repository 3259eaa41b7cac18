"""Where every file of a user lives on the site's storage, and who may read it.

    <storage_root>/users/                   root-owned, 0755: nobody but the admin creates in it
    <storage_root>/users/<user>/            owned by the user, created by the admin (docs/admin.md);
                                            2710 with SlurmUser's group where mail is on, else 0700
        notify/                             what gear-mailprog (SlurmUser) may read: 0750 under a
            settings.json                   setgid user directory, else 0700 (see notify/settings.py)
            executions/<container>/<n>      the token that proves the owner submitted that execution
        ledger.sqlite                       the user's ledger (0600)
        containers/<container>/<n>/         one execution (0700)
            code/                           the uploaded code, as submitted
            home/                           the working directory (/hyperai/home = /output)
            gear_params.json, job.sh, output.log, status.json

Privacy is the kernel's job: directories are created owner-only, and a
user directory that belongs to someone else is refused, not used. A
`users/` that every user may write (the old 1777 layout) is refused too:
there anyone could create another user's directory before them (squatting)
and block or pre-seed their storage.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..base.errors import GearError
from ..base.facts import CONTAINERS, DATASETS, LEDGER, NOTIFY, USERS, current_user
from ..base.sizes import human_size  # noqa: F401  (importable from here)


class UserStorage:
    def __init__(self, storage_root: Path, user: str | None = None):
        self.storage_root = Path(storage_root)
        self.user = user or current_user()
        self.root = self.storage_root / USERS / self.user

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER

    def container_dir(self, container: str) -> Path:
        return self.root / CONTAINERS / container

    def execution_dir(self, container: str, number: int) -> Path:
        return self.container_dir(container) / str(number)

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / DATASETS / dataset

    def version_dir(self, dataset: str, version: int) -> Path:
        return self.dataset_dir(dataset) / "versions" / str(version)

    def incoming_dir(self, dataset: str, key: str) -> Path:
        """Where an upload lands until it is complete (kept, so a rerun resumes)."""
        return self.dataset_dir(dataset) / "incoming" / key

    @property
    def notify_dir(self) -> Path:
        return self.root / NOTIFY

    def ensure(self) -> Path:
        """Check that the user's directory is theirs alone (creating it where the user may) and
        create what gear keeps in it."""
        users = self.storage_root / USERS
        try:
            users_info = users.stat()
        except OSError:
            raise GearError(f"storage root {users} does not exist; ask your admin to create it "
                            "(see docs/admin.md)") from None
        if not stat.S_ISDIR(users_info.st_mode):
            raise GearError(f"storage root {users} is not a directory; ask your admin (see docs/admin.md)")
        if users_info.st_mode & 0o002:
            raise GearError(f"{users} is writable by every user, so anyone could take another user's "
                            "directory; the admin must make it root-owned 0755 and create each user's "
                            "directory (docs/admin.md, 'Storage')")
        try:
            self.root.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except PermissionError:
            raise GearError(f"you have no gear storage yet ({self.root} does not exist); ask your admin to "
                            "create it (docs/admin.md, 'Storage')") from None
        info = self.root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise GearError(f"{self.root} is not a directory owned by you; refusing to use it "
                            "(ask your admin to remove it and create yours: docs/admin.md)")
        (self.root / CONTAINERS).mkdir(mode=0o700, exist_ok=True)
        (self.root / DATASETS).mkdir(mode=0o700, exist_ok=True)
        return self.root

    def ensure_notify_dir(self) -> Path:
        """The directory gear-mailprog reads, with the mode the user directory calls for.

        Only where the admin made the user directory setgid (its group is
        SlurmUser's, docs/admin.md) does notify/ open to that group; anywhere
        else the group may be a shared one (`users`), so it stays owner-only.
        """
        self.ensure()
        mode = 0o750 if self.root.stat().st_mode & stat.S_ISGID else 0o700
        path = self.notify_dir
        previous = os.umask(0o027)  # gear's own umask (077) would take the group's bits
        try:
            path.mkdir(mode=mode)   # inherits the setgid bit and SlurmUser's group
        except FileExistsError:
            pass
        finally:
            os.umask(previous)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise GearError(f"{path} is not a directory owned by you; refusing to use it")
        if stat.S_IMODE(info.st_mode) & 0o777 != mode:
            os.chmod(path, mode | (info.st_mode & stat.S_ISGID))
        return path


def tree_size(path: Path) -> int:
    """Apparent bytes of the files below `path` (st_size, every name counted), never following a symlink.

    Not what the disk holds: see `usage` for that.
    """
    total = 0
    for info, is_dir in walk_entries(str(path)):
        if not is_dir:
            total += info.st_size
    return total


# --- what the disk holds (docs/design.md, "Storage figures") ---

BLOCK = 512   # st_blocks is in 512-byte units, whatever the file system's block size


class Usage:
    """What a walk found: `disk` (allocated blocks × 512, as `du`), `apparent` (st_size of the
    files) and `files` (every entry that is not a directory)."""

    __slots__ = ("disk", "apparent", "files")

    def __init__(self, disk: int = 0, apparent: int = 0, files: int = 0):
        self.disk, self.apparent, self.files = disk, apparent, files

    def __repr__(self) -> str:
        return f"Usage(disk={self.disk}, apparent={self.apparent}, files={self.files})"


def walk_entries(top: str) -> Iterator[tuple[os.stat_result, bool]]:
    """(lstat, is a directory) of `top` and everything below it; never follows a symlink,
    skips what cannot be read (as `du` does, minus its complaint)."""
    try:
        info = os.lstat(top)
    except OSError:
        return
    yield info, stat.S_ISDIR(info.st_mode)
    if not stat.S_ISDIR(info.st_mode):
        return
    stack = [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    is_dir = stat.S_ISDIR(info.st_mode)
                    if is_dir:
                        stack.append(entry.path)
                    yield info, is_dir
        except OSError:
            continue


def usage(path: Path, seen: set[tuple[int, int]] | None = None) -> Usage:
    """What the disk holds for `path` and everything below it, as `du -s` counts it.

    Allocated blocks, not bytes (a 1-byte file takes a whole block); each
    inode once, by (st_dev, st_ino), however many hard links name it; a
    symlink counts its own blocks and is never followed; directories count
    their own blocks. Pass the same `seen` to several calls to count an
    inode only in the first that meets it (as `du -s A B` does).
    """
    seen = set() if seen is None else seen
    found = Usage()
    for info, is_dir in walk_entries(str(path)):
        if not is_dir:
            found.files += 1
        key = (info.st_dev, info.st_ino)
        if key in seen:
            continue
        if info.st_nlink > 1 or is_dir:
            seen.add(key)
        found.disk += info.st_blocks * BLOCK
        if not is_dir:
            found.apparent += info.st_size
    return found


def execution_usage(exec_dir: Path) -> Usage:
    """What the disk holds for one execution that no earlier execution of its container holds.

    A continuation hard-links its parent's unchanged files: those blocks
    count in the earliest execution that holds them, so the figures of a
    container's executions add up to `du -s` of the container. Only files
    with a link outside `exec_dir` are looked for in the earlier executions
    (the numbered directories beside it), nearest first, and only until
    each is found.
    """
    found = Usage()
    linked: dict[tuple[int, int], list[int]] = {}   # (dev, ino) -> [links, links seen here, blocks, size]
    for info, is_dir in walk_entries(str(exec_dir)):
        if not is_dir:
            found.files += 1
        if is_dir or info.st_nlink == 1:
            found.disk += info.st_blocks * BLOCK
            found.apparent += 0 if is_dir else info.st_size
            continue
        entry = linked.setdefault((info.st_dev, info.st_ino), [info.st_nlink, 0, info.st_blocks * BLOCK, info.st_size])
        entry[1] += 1
    # Links all inside this execution: its own. The rest may be an earlier execution's.
    wanted = {key for key, (links, here, _, _) in linked.items() if here < links}
    try:
        number = int(exec_dir.name)
        earlier = sorted((int(name) for name in os.listdir(exec_dir.parent)
                          if name.isdigit() and name.isascii() and int(name) < number), reverse=True)
    except (OSError, ValueError):
        earlier = []
    for other in earlier:
        if not wanted:
            break
        for info, is_dir in walk_entries(str(exec_dir.parent / str(other))):
            if not is_dir and info.st_nlink > 1:
                wanted.discard((info.st_dev, info.st_ino))
    for key, (links, here, blocks, size) in linked.items():
        if here >= links or key in wanted:
            found.disk += blocks
            found.apparent += size
    return found


def make_read_only(path: Path) -> None:
    """Take away every write bit below `path` and give read bits to all (never following a symlink).

    Closed dataset versions never change again; the kernel, not only gear,
    refuses a plain write to them. Readable by all because the dataset's
    directory is the gate that decides who may reach them (storage/sharing.py).
    """
    for directory, subdirs, files in os.walk(path, topdown=False):
        for name in files + subdirs:
            _drop_write(os.path.join(directory, name))
    _drop_write(str(path))


def _drop_write(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        return
    mode = stat.S_IMODE(info.st_mode)
    readable = 0o555 if stat.S_ISDIR(info.st_mode) else 0o444 | (0o111 if mode & stat.S_IXUSR else 0)
    if mode != (mode & ~0o222) | readable:
        os.chmod(path, (mode & ~0o222) | readable)


def remove_tree(path: Path) -> int:
    """Remove `path` and everything below it, never following a symlink; returns bytes freed.

    A `path` that is itself a symlink is removed as a link.
    """
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return remove_entry(parent, path.name)
    finally:
        os.close(parent)


# Removal through directory descriptors: each directory is opened relative to
# its parent with O_NOFOLLOW, so a symlink swapped in at any moment is
# removed as a link and its target is never touched (a path-based walk that
# checks islink() and then acts on the path can be raced).
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def list_fd(fd: int) -> list[str]:
    return sorted(os.listdir(fd))


def remove_entry(parent: int, name: str) -> int:
    """Remove `name` in the open directory `parent`, and all below it.

    Never follows a symlink: each directory is opened relative to its parent
    with O_NOFOLLOW, so a link found (or swapped in) anywhere is unlinked as
    a link. Read-only directories (saved working directories, dataset
    copies) are given back their owner's write bit first. Tolerates entries
    that vanish meanwhile (two deletes sweeping the same trash), and refuses
    to cross into another file system. Returns the bytes freed: the sizes of
    files whose last link it removed.
    """
    device = os.fstat(parent).st_dev
    freed = [0]
    top = _enter(parent, name, device, freed)
    if top is None:
        return freed[0]
    stack = [(parent, name, top, list_fd(top))]
    try:
        while stack:
            parent_fd, dir_name, fd, children = stack[-1]
            if children:
                child = children.pop()
                child_fd = _enter(fd, child, device, freed)
                if child_fd is not None:
                    stack.append((fd, child, child_fd, list_fd(child_fd)))
                continue
            stack.pop()
            os.close(fd)
            _rmdir(parent_fd, dir_name)
    finally:
        for _, _, fd, _ in stack:
            os.close(fd)
    return freed[0]


def _enter(parent: int, name: str, device: int, freed: list[int]) -> int | None:
    """Open directory `name` for removal of its entries; unlink it if it is anything else."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        if _unlink(parent, name) and info.st_nlink <= 1:
            freed[0] += info.st_size
        return None
    if info.st_dev != device:
        raise GearError(f"{name} is a mount point; unmount it first")
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):   # swapped for a link or a file meanwhile
            _unlink(parent, name)
            return None
        if exc.errno != errno.EACCES:
            raise
        # A directory without read permission: chmod it, the link-safe way (never a link's target).
        os.chmod(name, 0o700, dir_fd=parent, follow_symlinks=False)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    opened = os.fstat(fd)
    if opened.st_dev != device:
        os.close(fd)
        raise GearError(f"{name} is a mount point; unmount it first")
    if stat.S_IMODE(opened.st_mode) & 0o700 != 0o700:
        os.fchmod(fd, stat.S_IMODE(opened.st_mode) | 0o700)
    return fd


def _unlink(parent: int, name: str) -> bool:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        return False
    return True


def _rmdir(parent: int, name: str) -> None:
    try:
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except NotADirectoryError:   # emptied, then swapped for a link: remove the link, not its target
        _unlink(parent, name)
