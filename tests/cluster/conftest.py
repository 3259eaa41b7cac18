"""Fixtures for tests against the real local cluster (gear devcluster up).

`gear` runs inside the cluster as an ordinary user, exactly as on a login
node: `gear devcluster exec --user NAME -- gear …`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gear_hpc.devcluster import SCRIPT

# The storage root on this machine: /srv/gear inside the cluster, and here unless the cluster was
# brought up with another (GEAR_DEVCLUSTER_STORAGE; the cluster binds it at the same path inside too).
STORAGE_ROOT = Path(os.environ.get("GEAR_DEVCLUSTER_STORAGE") or "/srv/gear")


# Files a test made for people to look at (a browser's screenshot): named at the end of the run.
ARTIFACTS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for artifact in ARTIFACTS:
        terminalreporter.write_line(f"gear: {artifact}")


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session", autouse=True)
def cluster_up() -> None:
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True)
    if status.returncode != 0:
        pytest.fail("the local cluster is not up: run `gear devcluster up` (as root) first\n" + status.stdout,
                    pytrace=False)


@pytest.fixture(autouse=True)
def cluster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cluster uses its own site config (/etc/gear inside) and /srv/gear.
    for name in ("GEAR_SITE_CONFIG", "GEAR_STORAGE_ROOT", "GEAR_SLURM_BIN"):
        monkeypatch.delenv(name, raising=False)


STATE = Path(os.environ.get("GEAR_DEVCLUSTER_DIR") or "/var/lib/gear-devcluster")
_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


@contextlib.contextmanager
def network_of(node: str) -> Iterator[None]:
    """This thread's sockets (and the programs it starts) on NODE's network, and the cluster's
    host names resolved as its /etc/hosts says: a test speaks to a Jupyter server as a user on
    the login node would. A no-op on a cluster of one node, whose network is this machine's."""
    pidfile = STATE / "nodes" / f"{node}.pid"
    if not pidfile.exists():
        yield
        return
    hosts = {}
    for line in (STATE / "root" / "etc" / "hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            hosts[name] = fields[0]
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return original(hosts.get(host, host) if isinstance(host, str) else host, *args, **kwargs)

    mine = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    theirs = os.open(f"/proc/{pidfile.read_text().strip()}/ns/net", os.O_RDONLY)
    try:
        _setns(theirs)
        socket.getaddrinfo = getaddrinfo
        yield
    finally:
        socket.getaddrinfo = original
        _setns(mine)
        os.close(mine)
        os.close(theirs)


def address_of(node: str) -> str:
    """Where a test reaches a server on NODE: its address on a cluster of several nodes (see
    network_of), this machine's loopback on a cluster of one."""
    if not (STATE / "nodes" / "login.pid").exists():
        return "127.0.0.1"
    for line in (STATE / "root" / "etc" / "hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if node in fields[1:]:
            return fields[0]
    raise AssertionError(f"{node} is not in the cluster's /etc/hosts")


def compute_nodes() -> list[str]:
    """The compute nodes of a cluster of several nodes (none on a cluster of one)."""
    return sorted(p.stem for p in (STATE / "nodes").glob("node*.pid"))


@pytest.fixture
def login_network() -> Iterator[None]:
    with network_of("login"):
        yield


class User:
    def __init__(self, name: str):
        self.name = name
        self.run("true")
        self.pw = pwd.getpwnam(name)
        self.storage = STORAGE_ROOT / "users" / name

    def run(self, *argv: str, cwd: str | None = None, check: bool = False, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command = ["bash", str(SCRIPT), "exec", "--user", self.name]
        if cwd:
            command += ["--cwd", cwd]
        result = subprocess.run([*command, "--", *argv], capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def gear(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("gear", *args, **kw)

    def gear_json(self, *args: str) -> Any:
        return json.loads(self.gear(*args, "--json", check=True).stdout)

    def wait_for(self, execution_id: str, statuses: set[str], timeout: float = 120) -> dict:
        """The execution's status record once it is in one of `statuses` (or when time is up)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            record = self.gear_json("status", execution_id)
            if record["status"] in statuses or time.monotonic() > deadline:
                return record
            time.sleep(1)

    def make_dir(self, files: dict[str, str]) -> Path:
        """A directory of the user's own, under their home, with these files."""
        base = Path(self.pw.pw_dir) / "gear-tests" / uuid.uuid4().hex[:8]
        base.mkdir(parents=True)
        for relative, text in files.items():
            path = base / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for path in [base.parent, base, *base.rglob("*")]:
            os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
        return base


def site_yaml_text() -> str:
    """The repository's site.yaml as the cluster has it: its storage root is STORAGE_ROOT (devcluster's gear.sh)."""
    text = (Path(__file__).parents[2] / "site-config" / "site.yaml").read_text()
    return text.replace("\nstorage_root: /srv/gear\n", f"\nstorage_root: {STORAGE_ROOT}\n")


def custom_site(user: User, site_yaml: str = "", types_yaml: str = "") -> Path:
    """A copy of the repository's site configuration, owned by `user`, with text appended.

    Point gear at it with env={"GEAR_SITE_CONFIG": str(path)}.
    """
    repo_site = Path(__file__).parents[2] / "site-config"
    site = user.make_dir({
        "site.yaml": site_yaml_text() + site_yaml,
        "compute-types.yaml": (repo_site / "compute-types.yaml").read_text() + types_yaml,
        "images.yaml": (repo_site / "images.yaml").read_text(),
    })
    return site


def tree_state(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Bytes, mode and kept mode (sealing's attribute) of `root` and everything below it, never
    following a link: what "not one byte, mode or attribute changed" compares. Read as root on
    the host, which enters even a mode-000 directory."""
    import hashlib

    state = {}
    for path in sorted([root, *root.rglob("*")]):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else "-"
        try:
            kept = os.getxattr(path, "user.containers.override_stat", follow_symlinks=False)
        except OSError:
            kept = b""
        state[str(path.relative_to(root))] = (digest, info.st_mode, kept)
    return state


@pytest.fixture(scope="session")
def alice() -> User:
    return User("alice")


@pytest.fixture(scope="session")
def bob() -> User:
    return User("bob")


@pytest.fixture
def container() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"
