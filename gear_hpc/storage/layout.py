"""The names of a user's directories on the site's storage (the layout is drawn in storage/disk.py).

Standard library only and no pathlib: the fast path of `gear ls`/`gear
status` (cli/fastpath.py) reads these paths, and `UserStorage` builds its own
from the same names, so the two cannot look in different places.
"""

from __future__ import annotations

import os
import pwd

USERS = "users"
CONTAINERS = "containers"
DATASETS = "datasets"
NOTIFY = "notify"
LEDGER = "ledger.sqlite"


def current_user() -> str:
    """The login name of the real uid (not $USER, which anyone can set)."""
    return pwd.getpwuid(os.getuid()).pw_name


def user_paths(storage_root: str, user: str) -> dict[str, str]:
    """The paths of storage.disk.UserStorage(storage_root, user) that the fast path looks at."""
    users = os.path.join(storage_root, USERS)
    root = os.path.join(users, user)
    return {"users": users, "root": root, "containers": os.path.join(root, CONTAINERS),
            "datasets": os.path.join(root, DATASETS), "ledger": os.path.join(root, LEDGER)}
