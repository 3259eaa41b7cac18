"""The site configuration as gear uses it: compute types, images, and the sections of site.yaml.

Frozen dataclasses; site/loading.py builds them from the files, and the keys
each section of a file may hold are the fields of its class (`keys`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def keys(cls: type, without: tuple[str, ...] = ()) -> frozenset[str]:
    """The keys a config section may hold: the fields of its dataclass, less those gear fills in."""
    return frozenset(f.name for f in fields(cls)) - set(without)


@dataclass(frozen=True)
class ComputeType:
    name: str
    partition: str
    cpus: int
    memory: str
    time_limit: str
    gpus: int = 0
    gpu_type: str | None = None
    qos: str | None = None
    account: str | None = None
    constraint: str | None = None
    description: str = ""

    @property
    def gres(self) -> str | None:
        if not self.gpus:
            return None
        return f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "partition": self.partition,
                "cpus": self.cpus, "memory": self.memory, "gpus": self.gpus, "gpu_type": self.gpu_type,
                "time_limit": self.time_limit, "qos": self.qos, "account": self.account,
                "constraint": self.constraint}


@dataclass(frozen=True)
class Image:
    name: str
    path: str
    description: str = ""
    dependencies: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "description": self.description,
                "dependencies": list(self.dependencies)}


@dataclass(frozen=True)
class MailConfig:
    """The `mail:` section of site.yaml (docs/notifications.md); absent = mail off."""

    enabled: bool = False
    address: str = "{user}"        # the rule giving a user's address, e.g. {user}@example.org
    sender: str = "gear@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    timeout: int = 10              # seconds for each SMTP or HTTP exchange
    sms_email: str | None = None   # email-to-SMS pattern, e.g. {number}@sms.example.org
    sms_http: str | None = None    # or an HTTP endpoint that takes {"to", "text"} as JSON
    log_file: str | None = None    # where gear-mailprog logs (as SlurmUser; created 0600)
    job_extra: bool = True         # carry the outcome in the job's Extra field
    sms_daily_limit: int = 20      # texts per user per day (counted by gear-mailprog in state_dir)
    state_dir: str = "/var/spool/gear-mailprog"  # SlurmUser's own: the SMS counts


@dataclass(frozen=True)
class Workdir:
    """Where /hyperai/home lives while a job runs (docs/design.md, the table under Continue).

    shared:  directly on the site's storage (nothing to copy at the end);
    scratch: on node-local scratch, copied in at start, saved every
             `save_interval` seconds and at the end.
    """

    mode: str = "shared"
    scratch_dir: str | None = None
    save_interval: int = 300


@dataclass(frozen=True)
class CodeLimit:
    """The `code_limit:` section of site.yaml: how much `gear run` uploads from
    the current directory unasked (without --code) before it refuses."""

    bytes: int = 1 << 30
    files: int = 10000


@dataclass(frozen=True)
class Site:
    config_dir: Path
    storage_root: Path
    apptainer: str
    default_compute_type: str
    default_image: str
    time_limit_warning: int
    workdir: Workdir = field(default_factory=Workdir)
    compute_types: dict[str, ComputeType] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    mail: MailConfig = field(default_factory=MailConfig)
    jupyter: JupyterConfig = field(default_factory=lambda: JupyterConfig())
    code_limit: CodeLimit = field(default_factory=CodeLimit)

    def compute_type(self, name: str) -> ComputeType:
        from ..base.errors import NotFound
        try:
            return self.compute_types[name]
        except KeyError:
            raise NotFound(f"unknown compute type {name!r}; this site has: {', '.join(sorted(self.compute_types))}") from None

    def image(self, name: str) -> Image:
        from ..base.errors import NotFound
        try:
            return self.images[name]
        except KeyError:
            raise NotFound(f"unknown image {name!r}; this site has: {', '.join(sorted(self.images))}") from None


@dataclass(frozen=True)
class JupyterConfig:
    """The `jupyter:` section of site.yaml: Jupyter workspaces (docs/admin.md)."""

    idle_timeout: int = 3600        # seconds without kernel activity or connection, then shut down and save
    start_timeout: int = 180        # seconds JupyterLab gets to listen once the job runs
    ports: tuple[int, int] = (20000, 39999)   # the range a workspace's port is picked from
    login_host: str | None = None   # for the `ssh -L` line; default: the host gear runs on
    # Host paths bound read-only into every workspace so that `gear` works inside:
    # (source, target) pairs; the storage root and the site configuration are added by gear.
    binds: tuple[tuple[str, str], ...] = ()
    default_image: str | None = None   # for `gear jupyter` without -e; default: default_image
    # The images that serve JupyterLab: the portal's form offers these (and gear ood-submit
    # accepts only these). Empty: just the Jupyter default image.
    images: tuple[str, ...] = ()

    def portal_images(self, site_default: str) -> tuple[str, ...]:
        """The images the OnDemand form offers, the default first."""
        default = self.default_image or site_default
        return (default, *[name for name in self.images if name != default])
