"""The site configuration: compute types, images, storage, validated on load.

A site describes itself in a directory (GEAR_SITE_CONFIG, default /etc/gear)
holding `site.yaml`, `compute-types.yaml` and `images.yaml`. Every problem
is reported with the file, the key and what is allowed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import memo as site_memo
from ..base.errors import SiteConfigError
from .memo import DEFAULT_CONFIG_DIR

_SLURM_WORD = re.compile(r"[A-Za-z0-9_.+-]+\Z")  # partition, qos, account, gres type
_MEMORY = re.compile(r"[0-9]+[KMGT]?\Z")
# Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
_TIME = re.compile(r"([0-9]+-)?[0-9]+(:[0-9]+){0,2}\Z")
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.&|()\[\]*,-]+\Z")
_TYPE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")


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
    jupyter: "JupyterConfig" = field(default_factory=lambda: JupyterConfig())
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


def config_dir() -> Path:
    return Path(os.environ.get("GEAR_SITE_CONFIG") or DEFAULT_CONFIG_DIR)


def load(directory: Path | None = None) -> Site:
    """Load and validate the site configuration directory."""
    directory = directory or config_dir()
    if not directory.is_dir():
        raise SiteConfigError(
            f"site configuration directory {directory} does not exist "
            "(set GEAR_SITE_CONFIG, or ask your admin to install /etc/gear)")
    texts: dict[str, str] = {}  # file name -> the text validated
    site_file = _Section(directory / "site.yaml", _read_yaml(directory / "site.yaml", texts))
    types = _load_compute_types(directory / "compute-types.yaml", texts)
    images = _load_images(directory / "images.yaml", texts)
    site_file.only_keys({"storage_root", "apptainer", "default_compute_type", "default_image",
                         "time_limit_warning", "workdir", "mail", "jupyter", "code_limit"})
    storage_root = os.environ.get("GEAR_STORAGE_ROOT") or site_file.get("storage_root", _absolute_path)
    default_type = site_file.get("default_compute_type", str)
    default_image = site_file.get("default_image", str)
    if default_type not in types:
        site_file.fail("default_compute_type", f"{default_type!r} is not one of the compute types: {', '.join(sorted(types))}")
    if default_image not in images:
        site_file.fail("default_image", f"{default_image!r} is not one of the images: {', '.join(sorted(images))}")
    site = Site(
        config_dir=directory,
        storage_root=Path(storage_root),
        apptainer=site_file.get("apptainer", _plain_path, default="apptainer"),
        default_compute_type=default_type,
        default_image=default_image,
        time_limit_warning=site_file.get("time_limit_warning", _seconds, default=120),
        workdir=_load_workdir(site_file),
        compute_types=types,
        images=images,
        mail=_load_mail(site_file),
        jupyter=_load_jupyter(site_file),
        code_limit=_load_code_limit(site_file),
    )
    # What validated, for the fast path of `gear ls`/`gear status` (site_memo.py).
    site_memo.remember([texts[name] for name in site_memo.SITE_FILES], str(site.storage_root))
    return site


def _load_workdir(site_file: "_Section") -> Workdir:
    data = site_file.data.get("workdir")
    if data is None:
        return Workdir()
    if not isinstance(data, dict):
        site_file.fail("workdir", "expected a mapping with keys mode, scratch_dir, save_interval")
    section = _Section(site_file.path, data, prefix="workdir.")
    section.only_keys({"mode", "scratch_dir", "save_interval"})
    mode = section.get("mode", _str, default="shared")
    if mode not in ("shared", "scratch"):
        section.fail("mode", f"{mode!r} is not allowed; expected shared or scratch")
    scratch_dir = section.get("scratch_dir", _absolute_path, default=None)
    if mode == "scratch" and not scratch_dir:
        section.fail("scratch_dir", "is required when mode is scratch (a node-local directory such as /local/scratch)")
    return Workdir(mode=mode, scratch_dir=scratch_dir, save_interval=section.get("save_interval", _seconds, default=300))


def _load_code_limit(site_file: "_Section") -> CodeLimit:
    data = site_file.data.get("code_limit")
    if data is None:
        return CodeLimit()
    if not isinstance(data, dict):
        site_file.fail("code_limit", "expected a mapping with keys bytes, files")
    section = _Section(site_file.path, data, prefix="code_limit.")
    section.only_keys({"bytes", "files"})
    return CodeLimit(bytes=section.get("bytes", _byte_size, default=CodeLimit.bytes),
                     files=section.get("files", _positive_int, default=CodeLimit.files))


_BYTE_SIZE = re.compile(r"([0-9]+)([KMGT]?)\Z")


def _byte_size(value: Any) -> int:
    match = _BYTE_SIZE.match(str(value)) if not isinstance(value, bool) and isinstance(value, (int, str)) else None
    size = int(match.group(1)) << (10 * " KMGT".index(match.group(2) or " ")) if match else 0
    if size < 1:
        raise ValueError(f"{value!r} must be a size of at least 1 byte: a number of bytes, or with K, M, G or T "
                         "(powers of 1024) such as 500M or 1G")
    return size


def _read_yaml(path: Path, texts: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SiteConfigError(f"{path}: file is missing") from None
    except OSError as exc:
        raise SiteConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    if texts is not None:
        texts[path.name] = text
    cached = _parsed_cache(path, text)
    if cached is not None:
        return cached
    import yaml  # imported here: only commands that need the site pay for it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SiteConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SiteConfigError(f"{path}: expected a mapping of keys to values at the top level")
    _store_parsed(path, text, data)
    return data


# Importing PyYAML costs more than the rest of `gear status` together, so the
# parsed (not yet validated) content of each file is kept as JSON in the
# user's cache, keyed by the file's path and a hash of its text. Validation
# runs on every load all the same.

def _cache_file(path: Path, text: str) -> Path | None:
    import hashlib

    base = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if os.environ.get("HOME") else "")
    if not base:
        return None
    key = hashlib.sha256(f"{path.resolve()}\0{text}".encode()).hexdigest()[:32]
    return Path(base) / "gear-hpc" / "site" / f"{key}.json"


def _parsed_cache(path: Path, text: str) -> dict[str, Any] | None:
    import json

    cache = _cache_file(path, text)
    try:
        data = json.loads(cache.read_text()) if cache else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _store_parsed(path: Path, text: str, data: dict[str, Any]) -> None:
    import json

    cache = _cache_file(path, text)
    try:
        encoded = json.dumps(data)
        if cache is None or json.loads(encoded) != data:  # e.g. YAML dates or integer keys: do not cache
            return
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(encoded)
        os.replace(tmp, cache)
    except (OSError, TypeError, ValueError):
        pass


class _Section:
    """One mapping of a config file, with error messages that name file and key."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = ""):
        self.path, self.data, self.prefix = path, data, prefix

    def fail(self, key: str, why: str) -> None:
        raise SiteConfigError(f"{self.path}: {self.prefix}{key}: {why}")

    def only_keys(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                self.fail(str(key), f"unknown key; allowed keys are {', '.join(sorted(allowed))}")

    _MISSING = object()

    def get(self, key: str, convert: Callable[[Any], Any], default: Any = _MISSING) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is self._MISSING:
                self.fail(key, "is required")
            return default
        try:
            return convert(self.data[key])
        except (TypeError, ValueError) as exc:
            self.fail(key, str(exc))


def _str(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise TypeError(f"expected text, got {type(value).__name__}")
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise ValueError("must not contain control characters such as newlines")
    return text


def _matching(pattern: re.Pattern[str], allowed: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _str(value)
        if not pattern.match(text):
            raise ValueError(f"{text!r} is not allowed; expected {allowed}")
        return text
    return convert


def _absolute_path(value: Any) -> str:
    text = _str(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} must be an absolute path")
    if "%" in text or "," in text:
        # '%' is a filename pattern in sbatch --output; ',' breaks bind specs.
        raise ValueError(f"{text!r} must not contain '%' or ','")
    return text.rstrip("/") or "/"


def _plain_path(value: Any) -> str:
    text = _str(value)
    if not re.match(r"[A-Za-z0-9_./+-]+\Z", text):
        raise ValueError(f"{text!r} must be a command name or path without spaces or special characters")
    return text


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} must be a whole number of at least 1")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} must be a whole number of at least 0")
    return value


def _seconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= 65535:
        raise ValueError(f"{value!r} must be a number of seconds from 10 to 65535")
    return value


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return tuple(_str(item) for item in value)


_TYPE_KEYS = {"description", "partition", "cpus", "memory", "gpus", "gpu_type", "time_limit",
              "qos", "account", "constraint"}


def _load_compute_types(path: Path, texts: dict[str, str] | None = None) -> dict[str, ComputeType]:
    data = _read_yaml(path, texts)
    if not data:
        raise SiteConfigError(f"{path}: defines no compute types; at least one is required")
    types = {}
    for name, spec in data.items():
        if not isinstance(name, str) or not _TYPE_NAME.match(name):
            raise SiteConfigError(f"{path}: {name!r}: compute type names use a-z, 0-9, '.', '_', '-'")
        if not isinstance(spec, dict):
            raise SiteConfigError(f"{path}: {name}: expected a mapping with keys {', '.join(sorted(_TYPE_KEYS))}")
        section = _Section(path, spec, prefix=f"{name}.")
        section.only_keys(_TYPE_KEYS)
        gpus = section.get("gpus", _count, default=0)
        gpu_type = section.get("gpu_type", _matching(_SLURM_WORD, "a GRES type name such as a100"), default=None)
        if gpu_type and not gpus:
            section.fail("gpu_type", "is set but gpus is 0")
        types[name] = ComputeType(
            name=name,
            description=section.get("description", _str, default=""),
            partition=section.get("partition", _matching(_SLURM_WORD, "a Slurm partition name")),
            cpus=section.get("cpus", _positive_int),
            memory=section.get("memory", _matching(_MEMORY, "a Slurm memory size such as 4G or 512M")),
            gpus=gpus,
            gpu_type=gpu_type,
            time_limit=section.get("time_limit", _matching(_TIME, "a Slurm time such as 04:00:00 or 1-00:00:00")),
            qos=section.get("qos", _matching(_SLURM_WORD, "a QoS name"), default=None),
            account=section.get("account", _matching(_SLURM_WORD, "an account name"), default=None),
            constraint=section.get("constraint", _matching(_CONSTRAINT, "a Slurm constraint expression"), default=None),
        )
    return types


def _load_images(path: Path, texts: dict[str, str] | None = None) -> dict[str, Image]:
    data = _read_yaml(path, texts)
    if not data:
        raise SiteConfigError(f"{path}: defines no images; at least one is required")
    images = {}
    for name, spec in data.items():
        if not isinstance(name, str) or not _TYPE_NAME.match(name):
            raise SiteConfigError(f"{path}: {name!r}: image names use a-z, 0-9, '.', '_', '-'")
        if not isinstance(spec, dict):
            raise SiteConfigError(f"{path}: {name}: expected a mapping with keys description, path, dependencies")
        section = _Section(path, spec, prefix=f"{name}.")
        section.only_keys({"description", "path", "dependencies"})
        images[name] = Image(
            name=name,
            path=section.get("path", _absolute_path),
            description=section.get("description", _str, default=""),
            dependencies=section.get("dependencies", _string_list, default=()),
        )
    return images


def load_mail(directory: Path | None = None) -> MailConfig:
    """Only the `mail:` section of site.yaml: what gear-mailprog needs on the controller."""
    return load_for_mailprog(directory)[0]


def load_for_mailprog(directory: Path | None = None) -> tuple[MailConfig, Path]:
    """The `mail:` section and the storage root (where the owners' notify/ directories are)."""
    path = (directory or config_dir()) / "site.yaml"
    site_file = _Section(path, _read_yaml(path))
    storage_root = os.environ.get("GEAR_STORAGE_ROOT") or site_file.get("storage_root", _absolute_path)
    return _load_mail(site_file), Path(storage_root)


_MAIL_KEYS = {"enabled", "address", "sender", "smtp_host", "smtp_port", "timeout", "sms_email", "sms_http",
              "log_file", "job_extra", "sms_daily_limit", "state_dir"}


def _load_mail(site_file: _Section) -> MailConfig:
    data = site_file.data.get("mail")
    if data is None:
        return MailConfig()
    if not isinstance(data, dict):
        site_file.fail("mail", f"expected a mapping with keys {', '.join(sorted(_MAIL_KEYS))}")
    section = _Section(site_file.path, data, prefix="mail.")
    section.only_keys(_MAIL_KEYS)
    enabled = section.get("enabled", _bool, default=True)
    sms_email = section.get("sms_email", _pattern(number="+15551234567", digits="15551234567"), default=None)
    sms_http = section.get("sms_http", _http_url, default=None)
    if sms_email and sms_http:
        section.fail("sms_http", "set either sms_email or sms_http, not both")
    return MailConfig(
        enabled=enabled,
        address=section.get("address", _pattern(user="alice"), **({} if enabled else {"default": "{user}"})),
        sender=section.get("sender", _email, **({} if enabled else {"default": "gear@localhost"})),
        smtp_host=section.get("smtp_host", _matching(re.compile(r"[A-Za-z0-9.:-]+\Z"), "a host name or address"),
                              default="localhost"),
        smtp_port=section.get("smtp_port", _port, default=25),
        timeout=section.get("timeout", _timeout, default=10),
        sms_email=sms_email,
        sms_http=sms_http,
        log_file=section.get("log_file", _absolute_path, default=None),
        job_extra=section.get("job_extra", _bool, default=True),
        sms_daily_limit=section.get("sms_daily_limit", _count, default=20),
        state_dir=section.get("state_dir", _absolute_path, default="/var/spool/gear-mailprog"),
    )


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} must be true or false")
    return value


def _email(value: Any) -> str:
    from ..base.errors import UsageError
    from ..base.names import check_email

    try:
        return check_email(_str(value))
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def _pattern(**samples: str) -> Callable[[Any], str]:
    """An address pattern with one of the placeholders named, which must give a valid address."""
    names = " or ".join("{" + name + "}" for name in samples)

    def convert(value: Any) -> str:
        text = _str(value)
        if not any("{" + name + "}" in text for name in samples):
            raise ValueError(f"{text!r} must contain {names}, for example {names.split()[0]}@example.org")
        try:
            filled = text.format(**samples)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"{text!r}: the only placeholders allowed are {names}") from None
        _email(filled)
        return text
    return convert


def _http_url(value: Any) -> str:
    text = _str(value)
    if not re.match(r"https?://[^\s/]+", text):
        raise ValueError(f"{text!r} must be an http:// or https:// URL")
    return text


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100000:
        raise ValueError(f"{value!r} must be a whole number from 0 to 100000")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{value!r} must be a port number from 1 to 65535")
    return value


def _timeout(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60:
        raise ValueError(f"{value!r} must be a number of seconds from 1 to 60")
    return value


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


_JUPYTER_KEYS = {"idle_timeout", "start_timeout", "ports", "login_host", "binds", "default_image"}


def _load_jupyter(site_file: _Section) -> JupyterConfig:
    data = site_file.data.get("jupyter")
    if data is None:
        return JupyterConfig()
    if not isinstance(data, dict):
        site_file.fail("jupyter", f"expected a mapping with keys {', '.join(sorted(_JUPYTER_KEYS))}")
    section = _Section(site_file.path, data, prefix="jupyter.")
    section.only_keys(_JUPYTER_KEYS)
    return JupyterConfig(
        idle_timeout=section.get("idle_timeout", _idle_seconds, default=3600),
        start_timeout=section.get("start_timeout", _seconds, default=180),
        ports=section.get("ports", _port_range, default=(20000, 39999)),
        login_host=section.get("login_host", _matching(re.compile(r"[A-Za-z0-9.-]+\Z"), "a host name"),
                               default=None),
        binds=section.get("binds", _bind_list, default=()),
        default_image=section.get("default_image", _str, default=None),
    )


def _idle_seconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 60 <= value <= 7 * 86400:
        raise ValueError(f"{value!r} must be a number of seconds from 60 to 604800")
    return value


def _port_range(value: Any) -> tuple[int, int]:
    match = re.match(r"([0-9]+)-([0-9]+)\Z", _str(value))
    low, high = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not 1024 <= low <= high <= 65535:
        raise ValueError(f"{value!r} must be a range of ports such as 20000-39999 (from 1024 to 65535)")
    return low, high


def _bind_list(value: Any) -> tuple[tuple[str, str], ...]:
    binds = []
    for item in _string_list(value):
        source, _, target = item.partition(":")
        source, target = _absolute_path(source), _absolute_path(target or source)
        if ":" in target:
            raise ValueError(f"{item!r}: expected SOURCE or SOURCE:TARGET, absolute paths")
        binds.append((source, target))
    return tuple(binds)
