"""The site configuration: compute types, images, storage, validated on load.

A site describes itself in a directory (GEAR_SITE_CONFIG, default /etc/gear)
holding `site.yaml`, `compute-types.yaml` and `images.yaml`. Every problem
is reported with the file, the key and what is allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..base.errors import SiteConfigError
from . import checks, memo as site_memo
from .model import CodeLimit, ComputeType, Image, JupyterConfig, MailConfig, Site, Workdir, keys

# The keys of site.yaml: Site's fields, less what comes from elsewhere.
_SITE_KEYS = keys(Site, without=("config_dir", "compute_types", "images"))

def config_dir() -> Path:
    return Path(site_memo.config_dir_name())


def load(directory: Path | None = None) -> Site:
    """Load and validate the site configuration directory."""
    directory = directory or config_dir()
    if not directory.is_dir():
        raise SiteConfigError(
            f"site configuration directory {directory} does not exist "
            "(set GEAR_SITE_CONFIG, or ask your admin to install /etc/gear)")
    texts: dict[str, tuple[str, dict[str, Any]]] = {}  # file name -> the text validated, and its data
    site_file = _Section(directory / "site.yaml", _read_yaml(directory / "site.yaml", texts))
    types = _load_compute_types(directory / "compute-types.yaml", texts)
    images = _load_images(directory / "images.yaml", texts)
    site_file.only_keys(_SITE_KEYS)
    storage_root = os.environ.get("GEAR_STORAGE_ROOT") or site_file.get("storage_root", checks.absolute_path)
    default_type = site_file.get("default_compute_type", str)
    default_image = site_file.get("default_image", str)
    if default_type not in types:
        site_file.fail("default_compute_type", f"{default_type!r} is not one of the compute types: {', '.join(sorted(types))}")
    if default_image not in images:
        site_file.fail("default_image", f"{default_image!r} is not one of the images: {', '.join(sorted(images))}")
    site = Site(
        config_dir=directory,
        storage_root=Path(storage_root),
        apptainer=site_file.get("apptainer", checks.plain_path, default="apptainer"),
        default_compute_type=default_type,
        default_image=default_image,
        time_limit_warning=site_file.get("time_limit_warning", checks.seconds, default=120),
        workdir=_load_workdir(site_file),
        compute_types=types,
        images=images,
        mail=_load_mail(site_file),
        jupyter=_load_jupyter(site_file, images),
        code_limit=_load_code_limit(site_file),
    )
    # What validated, for the fast path of `gear ls`/`gear status` (site/memo.py).
    site_memo.remember(str(directory), texts, str(site.storage_root))
    return site


def _load_workdir(site_file: _Section) -> Workdir:
    data = site_file.data.get("workdir")
    if data is None:
        return Workdir()
    if not isinstance(data, dict):
        site_file.fail("workdir", "expected a mapping with keys mode, scratch_dir, save_interval")
    section = _Section(site_file.path, data, prefix="workdir.")
    section.only_keys(keys(Workdir))
    mode = section.get("mode", checks.plain_text, default="shared")
    if mode not in ("shared", "scratch"):
        section.fail("mode", f"{mode!r} is not allowed; expected shared or scratch")
    scratch_dir = section.get("scratch_dir", checks.absolute_path, default=None)
    if mode == "scratch" and not scratch_dir:
        section.fail("scratch_dir", "is required when mode is scratch (a node-local directory such as /local/scratch)")
    return Workdir(mode=mode, scratch_dir=scratch_dir, save_interval=section.get("save_interval", checks.seconds, default=300))


def _load_code_limit(site_file: _Section) -> CodeLimit:
    data = site_file.data.get("code_limit")
    if data is None:
        return CodeLimit()
    if not isinstance(data, dict):
        site_file.fail("code_limit", "expected a mapping with keys bytes, files")
    section = _Section(site_file.path, data, prefix="code_limit.")
    section.only_keys(keys(CodeLimit))
    return CodeLimit(bytes=section.get("bytes", checks.byte_size, default=CodeLimit.bytes),
                     files=section.get("files", checks.positive_int, default=CodeLimit.files))


def _read_yaml(path: Path, texts: dict[str, tuple[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SiteConfigError(f"{path}: file is missing") from None
    except OSError as exc:
        raise SiteConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    # The user's cache of site files (site/memo.py): what exactly this text parsed to last time.
    data = site_memo.parsed(str(path.parent), path.name, text)
    if data is None:
        data = _parse_yaml(path, text)
    if texts is not None:
        texts[path.name] = (text, data)
    return data


def _parse_yaml(path: Path, text: str) -> dict[str, Any]:
    import yaml  # imported here: only commands that need the site pay for it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SiteConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SiteConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


class _Section:
    """One mapping of a config file, with error messages that name file and key."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = ""):
        self.path, self.data, self.prefix = path, data, prefix

    def fail(self, key: str, why: str) -> None:
        raise SiteConfigError(f"{self.path}: {self.prefix}{key}: {why}")

    def only_keys(self, allowed: frozenset[str]) -> None:
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


_TYPE_KEYS = keys(ComputeType, without=("name",))
_IMAGE_KEYS = keys(Image, without=("name",))


def _named_sections(path: Path, texts: dict[str, tuple[str, dict[str, Any]]] | None, kind: str,
                    allowed: frozenset[str]) -> Iterator[tuple[str, _Section]]:
    """The entries of compute-types.yaml or images.yaml, each a checked name and its section."""
    data = _read_yaml(path, texts)
    if not data:
        raise SiteConfigError(f"{path}: defines no {kind}s; at least one is required")
    for name, spec in data.items():
        if not isinstance(name, str) or not checks.TYPE_NAME.match(name):
            raise SiteConfigError(f"{path}: {name!r}: {kind} names use a-z, 0-9, '.', '_', '-'")
        if not isinstance(spec, dict):
            raise SiteConfigError(f"{path}: {name}: expected a mapping with keys {', '.join(sorted(allowed))}")
        section = _Section(path, spec, prefix=f"{name}.")
        section.only_keys(allowed)
        yield name, section


def _load_compute_types(path: Path, texts: dict[str, tuple[str, dict[str, Any]]] | None = None) -> dict[str, ComputeType]:
    types = {}
    for name, section in _named_sections(path, texts, "compute type", _TYPE_KEYS):
        gpus = section.get("gpus", checks.count, default=0)
        gpu_type = section.get("gpu_type", checks.matching(checks.SLURM_WORD, "a GRES type name such as a100"), default=None)
        if gpu_type and not gpus:
            section.fail("gpu_type", "is set but gpus is 0")
        types[name] = ComputeType(
            name=name,
            description=section.get("description", checks.plain_text, default=""),
            partition=section.get("partition", checks.matching(checks.SLURM_WORD, "a Slurm partition name")),
            cpus=section.get("cpus", checks.positive_int),
            memory=section.get("memory", checks.matching(checks.MEMORY, "a Slurm memory size such as 4G or 512M")),
            gpus=gpus,
            gpu_type=gpu_type,
            time_limit=section.get("time_limit", checks.matching(checks.TIME, "a Slurm time such as 04:00:00 or 1-00:00:00")),
            qos=section.get("qos", checks.matching(checks.SLURM_WORD, "a QoS name"), default=None),
            account=section.get("account", checks.matching(checks.SLURM_WORD, "an account name"), default=None),
            constraint=section.get("constraint", checks.matching(checks.CONSTRAINT, "a Slurm constraint expression"),
                                   default=None),
        )
    return types


def _load_images(path: Path, texts: dict[str, tuple[str, dict[str, Any]]] | None = None) -> dict[str, Image]:
    images = {}
    for name, section in _named_sections(path, texts, "image", _IMAGE_KEYS):
        images[name] = Image(
            name=name,
            path=section.get("path", checks.absolute_path),
            description=section.get("description", checks.plain_text, default=""),
            dependencies=section.get("dependencies", checks.string_list, default=()),
        )
    return images


def load_mail(directory: Path | None = None) -> MailConfig:
    """Only the `mail:` section of site.yaml: what gear-mailprog needs on the controller."""
    return load_for_mailprog(directory)[0]


def load_for_mailprog(directory: Path | None = None) -> tuple[MailConfig, Path]:
    """The `mail:` section and the storage root (where the owners' notify/ directories are)."""
    path = (directory or config_dir()) / "site.yaml"
    site_file = _Section(path, _read_yaml(path))
    storage_root = os.environ.get("GEAR_STORAGE_ROOT") or site_file.get("storage_root", checks.absolute_path)
    return _load_mail(site_file), Path(storage_root)


_MAIL_KEYS = keys(MailConfig)


def _load_mail(site_file: _Section) -> MailConfig:
    data = site_file.data.get("mail")
    if data is None:
        return MailConfig()
    if not isinstance(data, dict):
        site_file.fail("mail", f"expected a mapping with keys {', '.join(sorted(_MAIL_KEYS))}")
    section = _Section(site_file.path, data, prefix="mail.")
    section.only_keys(_MAIL_KEYS)
    enabled = section.get("enabled", checks.boolean, default=True)
    sms_email = section.get("sms_email", checks.address_pattern(number="+15551234567", digits="15551234567"), default=None)
    sms_http = section.get("sms_http", checks.http_url, default=None)
    if sms_email and sms_http:
        section.fail("sms_http", "set either sms_email or sms_http, not both")
    return MailConfig(
        enabled=enabled,
        address=section.get("address", checks.address_pattern(user="alice"), **({} if enabled else {"default": "{user}"})),
        sender=section.get("sender", checks.email_address, **({} if enabled else {"default": "gear@localhost"})),
        smtp_host=section.get("smtp_host", checks.matching(re.compile(r"[A-Za-z0-9.:-]+\Z"), "a host name or address"),
                              default="localhost"),
        smtp_port=section.get("smtp_port", checks.port_number, default=25),
        timeout=section.get("timeout", checks.timeout_seconds, default=10),
        sms_email=sms_email,
        sms_http=sms_http,
        log_file=section.get("log_file", checks.absolute_path, default=None),
        job_extra=section.get("job_extra", checks.boolean, default=True),
        sms_daily_limit=section.get("sms_daily_limit", checks.count, default=20),
        state_dir=section.get("state_dir", checks.absolute_path, default="/var/spool/gear-mailprog"),
    )


_JUPYTER_KEYS = keys(JupyterConfig)


def _load_jupyter(site_file: _Section, images: dict[str, Image]) -> JupyterConfig:
    data = site_file.data.get("jupyter")
    if data is None:
        return JupyterConfig()
    if not isinstance(data, dict):
        site_file.fail("jupyter", f"expected a mapping with keys {', '.join(sorted(_JUPYTER_KEYS))}")
    section = _Section(site_file.path, data, prefix="jupyter.")
    section.only_keys(_JUPYTER_KEYS)
    config = JupyterConfig(
        idle_timeout=section.get("idle_timeout", checks.idle_seconds, default=3600),
        start_timeout=section.get("start_timeout", checks.seconds, default=180),
        ports=section.get("ports", checks.port_range, default=(20000, 39999)),
        login_host=section.get("login_host", checks.matching(re.compile(r"[A-Za-z0-9.-]+\Z"), "a host name"),
                               default=None),
        binds=section.get("binds", checks.bind_list, default=()),
        default_image=section.get("default_image", checks.plain_text, default=None),
        images=section.get("images", checks.string_list, default=()),
    )
    for key, names in (("default_image", [config.default_image] if config.default_image else []),
                       ("images", list(config.images))):
        for name in names:
            if name not in images:
                section.fail(key, f"{name!r} is not one of the images: {', '.join(sorted(images))}")
    return config
