"""Where every file of a user lives on the site's storage, and who may read it.

    <storage_root>/users/<user>/            0700, owned by the user
        ledger.sqlite                       the user's ledger
        containers/<container>/<n>/         one execution
            code/                           the uploaded code, as submitted
            home/                           the working directory (/hyperai/home = /output)
            gear_params.json, job.sh, output.log, status.json

Privacy is the kernel's job: directories are created owner-only, and a
user directory that belongs to someone else is refused, not used.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from pathlib import Path

from .errors import GearError


def current_user() -> str:
    """The login name of the real uid (not $USER, which anyone can set)."""
    return pwd.getpwuid(os.getuid()).pw_name


class UserStorage:
    def __init__(self, storage_root: Path, user: str | None = None):
        self.storage_root = Path(storage_root)
        self.user = user or current_user()
        self.root = self.storage_root / "users" / self.user

    @property
    def ledger_path(self) -> Path:
        return self.root / "ledger.sqlite"

    def container_dir(self, container: str) -> Path:
        return self.root / "containers" / container

    def execution_dir(self, container: str, number: int) -> Path:
        return self.container_dir(container) / str(number)

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def version_dir(self, dataset: str, version: int) -> Path:
        return self.dataset_dir(dataset) / "versions" / str(version)

    def incoming_dir(self, dataset: str, key: str) -> Path:
        """Where an upload lands until it is complete (kept, so a rerun resumes)."""
        return self.dataset_dir(dataset) / "incoming" / key

    def ensure(self) -> Path:
        """Create the user's directory if needed and check that it is theirs alone."""
        users = self.storage_root / "users"
        if not users.is_dir():
            raise GearError(f"storage root {users} does not exist; ask your admin to create it "
                            "(see docs/admin.md)")
        try:
            self.root.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except PermissionError:
            raise GearError(f"cannot create {self.root}: permission denied; ask your admin to create it for you") from None
        info = self.root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise GearError(f"{self.root} is not a directory owned by you; refusing to use it")
        (self.root / "containers").mkdir(mode=0o700, exist_ok=True)
        (self.root / "datasets").mkdir(mode=0o700, exist_ok=True)
        return self.root


def tree_size(path: Path) -> int:
    """Bytes used by the files below `path`, never following a symlink."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def make_read_only(path: Path) -> None:
    """Take away every write bit below `path` (never following a symlink).

    Closed dataset versions and saved working directories never change
    again; the kernel, not only gear, refuses a plain write to them.
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
    if mode & 0o222:
        os.chmod(path, mode & ~0o222)


def remove_tree(path: Path) -> None:
    """Remove a directory tree that may be read-only; never follows a symlink out of it."""
    if path.is_symlink():
        path.unlink()
        return
    if not path.exists():
        return
    # Give the owner write access to every directory first (os.walk does not
    # follow symlinks), then let rmtree remove the tree, links as links.
    os.chmod(path, stat.S_IMODE(path.lstat().st_mode) | stat.S_IRWXU)
    for directory, subdirs, _files in os.walk(path):
        for name in subdirs:
            child = os.path.join(directory, name)
            if not os.path.islink(child):
                os.chmod(child, stat.S_IMODE(os.lstat(child).st_mode) | stat.S_IRWXU)
    shutil.rmtree(path)
