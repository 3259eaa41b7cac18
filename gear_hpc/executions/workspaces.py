"""Jupyter workspaces: executions in mode `jupyter` (docs/cli.md, `gear jupyter`).

A workspace is an execution like any other (same layout, bindings, status,
stop, saved working directory) whose payload is JupyterLab instead of a
command. What differs, and lives here:

- the token: a secret, generated here, kept in a 0600 file in the user's
  storage (never in the ledger, the status records or a command line) and
  handed to Jupyter through its environment by the batch script;
- the port: picked on the compute node by the batch script (jupyter.sh.j2),
  which writes `jupyter.json` (node, port — no secret) when Jupyter listens;
- idle shutdown: Jupyter's own culling and `shutdown_no_activity_timeout`;
- what the image needs from the host so that `gear` works inside
  (site.yaml `jupyter.binds`, plus the storage root and site configuration).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import UsageError
from ..ledger.db import Execution, Ledger
from ..site.model import Site
from ..slurm.apptainer import HOME, Mount
from ..storage.disk import UserStorage
from . import lifecycle as executions, reconcile
from .workspace_job import Workspace

DEFAULT_CONTAINER = "workspace"


def jupyter_command(idle_timeout: int, base_url: str = "/") -> list[str]:
    """JupyterLab's argv. Port and token come from JUPYTER_PORT / JUPYTER_TOKEN."""
    interval = max(10, min(300, idle_timeout // 2))
    return ["jupyter", "lab", "--no-browser", "--ip=0.0.0.0", "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={HOME}", f"--ServerApp.base_url={base_url}",
            # Idle: kernels without activity and without an open connection are culled,
            # then the server, with no kernel, terminal or request left, shuts down.
            f"--ServerApp.shutdown_no_activity_timeout={idle_timeout}",
            f"--MappingKernelManager.cull_idle_timeout={idle_timeout}",
            f"--MappingKernelManager.cull_interval={interval}",
            "--MappingKernelManager.cull_connected=False",
            f"--TerminalManager.cull_inactive_timeout={idle_timeout}",
            f"--TerminalManager.cull_interval={interval}"]


def _token_dir(storage: UserStorage) -> Path:
    path = storage.root / "workspaces"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def new_token(storage: UserStorage) -> tuple[str, Path]:
    """A fresh token and the private file that carries it to the job."""
    token = secrets.token_urlsafe(32)
    fd, name = tempfile.mkstemp(prefix="token-", dir=_token_dir(storage))  # 0600
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return token, Path(name)


def inner_bindings(site: Site, storage: UserStorage, specs: list[str]) -> list[str]:
    """The workspace's read-only bindings, canonical (mnist@3:/hyperai/input/input0), for `gear run` inside."""
    from ..data import bindings as binding_specs

    parsed = binding_specs.parse_all(specs)
    if not parsed:
        return []
    storage.ensure()
    with Ledger(storage.ledger_path) as ledger:
        resolved = binding_specs.resolve(parsed, ledger, storage, storage.user)
    return [f"{b.source}:{b.target}" for b in resolved if b.read_only and b.target != HOME]


def build_request(site: Site, storage: UserStorage, *, container: str | None, compute_type: str | None,
                  image: str | None, bindings: list[str], code: Path | None, message: str | None,
                  idle_timeout: int | None, port: int | None, base_url: str = "/",
                  token_file: Path, parent: str | None = None, home_layer: bool = False) -> executions.RunRequest:
    """The RunRequest of a workspace (mode jupyter)."""
    config = site.jupyter
    idle = config.idle_timeout if idle_timeout is None else idle_timeout
    if not 60 <= idle <= config.idle_timeout:
        raise UsageError(f"--idle-timeout must be from 60 to this site's limit of {config.idle_timeout} s")
    if port is not None and not 1024 <= port <= 65535:
        raise UsageError(f"--port {port}: expected a port from 1024 to 65535")
    if not base_url.startswith("/") or not base_url.endswith("/") or any(c in base_url for c in " '\"\\$`"):
        raise UsageError(f"--base-url {base_url!r}: expected a path such as /node/host/8888/")
    mounts = [Mount(source, target, read_only=True) for source, target in config.binds]
    # gear inside the workspace: the user's storage (its ledger) and the site's configuration.
    mounts.append(Mount(str(site.storage_root), str(site.storage_root), read_only=False))
    mounts.append(Mount(str(site.config_dir.resolve()), str(site.config_dir.resolve()), read_only=True))
    environment = [("GEAR_SITE_CONFIG", str(site.config_dir.resolve())),
                   ("GEAR_BINDINGS", json.dumps(inner_bindings(site, storage, bindings))),
                   ("GEAR_WORKSPACE", "1")]
    if os.environ.get("GEAR_STORAGE_ROOT"):
        environment.append(("GEAR_STORAGE_ROOT", str(site.storage_root)))
    workspace = Workspace(
        token_file=str(token_file), preferred_ports=(port,) if port else (),
        port_low=config.ports[0], port_high=config.ports[1],
        start_timeout=config.start_timeout, idle_timeout=idle, base_url=base_url,
        environment=tuple(environment), mounts=tuple(mounts))
    if code is None:
        code = Path(tempfile.mkdtemp(prefix="gear-empty-"))  # nothing to upload; removed by the caller
        container = container or DEFAULT_CONTAINER
    return executions.RunRequest(
        command=jupyter_command(idle, base_url), code=code, container=container,
        compute_type=compute_type, image=image, message=message, bindings=list(bindings), mode="jupyter",
        workspace=workspace, parent=parent, home_layer=home_layer)


@dataclass
class Connection:
    node: str
    port: int
    base_url: str
    token: str
    login_host: str
    user: str

    @property
    def url(self) -> str:
        return f"http://{self.node}:{self.port}{self.base_url}lab?token={self.token}"

    @property
    def local_url(self) -> str:
        return f"http://localhost:{self.port}{self.base_url}lab?token={self.token}"

    @property
    def ssh(self) -> str:
        return f"ssh -N -L {self.port}:{self.node}:{self.port} {self.user}@{self.login_host}"


def read_connection(execution: Execution) -> dict[str, Any] | None:
    try:
        connection: dict[str, Any] = json.loads((Path(execution.workdir).parent / "jupyter.json").read_text())
        return connection
    except (OSError, ValueError):
        return None


def token_of(execution: Execution) -> str | None:
    """The token of a workspace, from its private file (only its owner can read it)."""
    try:
        return (Path(execution.workdir).parent / "jupyter-token").read_text().strip() or None
    except OSError:
        return None


def answers(node: str, port: int, base_url: str, token: str | None, timeout: float = 5.0) -> int | None:
    """The HTTP status of Jupyter's /api/status (with the token if given), or None if no answer."""
    request = urllib.request.Request(f"http://{node}:{port}{base_url}api/status")
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_until_ready(ledger: Ledger, execution: Execution, token: str, site: Site, wait_seconds: float,
                     progress: Callable[[str], None] = lambda message: None,
                     poll: float = 1.0) -> tuple[Execution, Connection | None, str | None]:
    """Wait (bounded) until the workspace answers HTTP with its token.

    Returns the execution, its connection (None if not ready), and why not.
    """
    deadline = time.monotonic() + wait_seconds
    last_status = ""
    while True:
        reconcile.refresh(ledger)
        execution = reconcile.get(ledger, execution.container, execution.number)
        if execution.status != last_status:
            progress(f"{execution.id} is {execution.status}")
            last_status = execution.status
        info = read_connection(execution)
        if info and info.get("error"):
            return execution, None, str(info["error"])
        if not execution.is_open:
            return execution, None, f"the workspace ended ({execution.status}) before JupyterLab answered"
        if info and info.get("port"):
            node, port, base = str(info["node"]), int(info["port"]), str(info.get("base_url") or "/")
            if answers(node, port, base, token) == 200:
                return execution, Connection(node, port, base, token, site.jupyter.login_host or socket.gethostname(),
                                             storage_user(execution)), None
        if time.monotonic() > deadline:
            why = ("still queued: Slurm has not started it yet" if execution.status == "queued"
                   else f"JupyterLab did not answer within {wait_seconds:.0f} s")
            return execution, None, why
        time.sleep(poll)


def storage_user(execution: Execution) -> str:
    # <storage_root>/users/<user>/containers/<c>/<n>/home
    return Path(execution.workdir).parents[3].name


def log_tail(execution: Execution, lines: int = 30) -> str:
    try:
        text = reconcile.log_path(execution).read_text(errors="replace")
    except OSError:
        return "(no log yet)"
    return "\n".join(text.splitlines()[-lines:])


def start(site: Site, storage: UserStorage, notice: Callable[[str], None], **options: Any) -> tuple[Execution, str]:
    """Create and submit a workspace; returns the execution and its token."""
    storage.ensure()
    token, token_file = new_token(storage)
    request = None
    try:
        request = build_request(site, storage, token_file=token_file, **options)
        execution = executions.submit(site, storage, request, notice=notice)
    except BaseException:
        token_file.unlink(missing_ok=True)
        raise
    finally:
        if request is not None and options.get("code") is None:
            try:
                Path(request.code).rmdir()
            except OSError:
                pass
    # Beside the execution, for later look-ups (gear jupyter --url); the file stays 0600.
    try:
        (Path(execution.workdir).parent / "jupyter-token").symlink_to(token_file)
    except OSError:
        pass
    return execution, token
