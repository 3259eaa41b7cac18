"""What an image holds: labels written into it when it is built, read back by `gear images NAME`.

The labels are Apptainer labels, so `apptainer inspect --json IMAGE` reads
them from the SIF's header without starting a container (fast, and possible
on a login node without FUSE). The keys (docs/admin.md tells a site how to
set them on its own images):

  org.gear-hpc.os      the OS release, e.g. "Debian GNU/Linux 13 (trixie)"
  org.gear-hpc.python  what `python3 --version` prints, without "Python ", e.g. "3.13.5"
  org.gear-hpc.pip     what `pip list` shows: name==version, separated by spaces
  org.gear-hpc.debian  key distribution packages: name=version, separated by spaces

Run as a script with the image's own python3 at build time (standard library
only), this file prints those labels for the image it runs in:

  python3 image_manifest.py [--format json|apptainer] [DEBIAN_PACKAGE ...]

`json` is the content of /.singularity.d/labels.json (what the local cluster
writes into its sandboxes); `apptainer` is one `KEY VALUE` line per label,
for `>> $APPTAINER_LABELS` in a definition file's %post.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PREFIX = "org.gear-hpc."
OS = PREFIX + "os"
PYTHON = PREFIX + "python"
PIP = PREFIX + "pip"
DEBIAN = PREFIX + "debian"
KEYS = (OS, PYTHON, PIP, DEBIAN)
BUILD_DATE = "org.label-schema.build-date"   # Apptainer's own label
LABELS_TIMEOUT = 20.0


class ManifestUnavailable(Exception):
    """The image's labels could not be read here; the message says why, in one line."""


@dataclass(frozen=True)
class Manifest:
    os: str | None = None
    python: str | None = None
    pip: dict[str, str] = field(default_factory=dict)
    debian: dict[str, str] = field(default_factory=dict)
    built: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"os": self.os, "python": self.python, "built": self.built,
                "debian": dict(self.debian), "pip": dict(self.pip)}


def _pairs(text: str, separator: str) -> dict[str, str]:
    """"a==1 b==2" -> {"a": "1", "b": "2"}; a word without a version maps to ""."""
    pairs = {}
    for word in text.split():
        name, _, version = word.partition(separator)
        pairs[name] = version
    return pairs


def from_labels(labels: dict[str, Any]) -> Manifest | None:
    """The manifest in an image's labels; None if the image carries none of gear's keys."""
    if not any(key in labels for key in KEYS):
        return None

    def text(key: str) -> str | None:
        value = labels.get(key)
        if value is None:
            return None
        return str(value).strip() or None

    built = text(BUILD_DATE)
    return Manifest(
        os=text(OS),
        python=text(PYTHON),
        pip=_pairs(text(PIP) or "", "=="),
        debian=_pairs(text(DEBIAN) or "", "="),
        built=built.replace("_", " ") if built else None,   # "Wednesday_2_December_2026_10:29:28_UTC"
    )


def parse_inspect(output: str) -> Manifest | None:
    """The manifest in `apptainer inspect --json` output."""
    try:
        data = json.loads(output)
        labels = data["data"]["attributes"].get("labels") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ManifestUnavailable("apptainer inspect printed something other than the expected JSON") from None
    if not isinstance(labels, dict):
        raise ManifestUnavailable("apptainer inspect printed labels that are not a mapping")
    return from_labels(labels)


def inspect_argv(apptainer: str, image_path: str) -> list[str]:
    return [apptainer, "inspect", "--json", image_path]


def read(apptainer: str, image_path: str, timeout: float = LABELS_TIMEOUT) -> Manifest | None:
    """The image's manifest, from one `apptainer inspect` (None: the image has no gear labels)."""
    from .base import runner
    from .base.errors import GearError

    try:
        result = runner.run(inspect_argv(apptainer, image_path), timeout=timeout)
    except runner.CommandFailed as exc:
        if exc.timed_out:
            raise ManifestUnavailable(f"apptainer inspect did not answer within {timeout:.0f} s") from None
        lines = [line.strip() for line in (exc.stderr or exc.stdout).splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {exc.returncode}"
        raise ManifestUnavailable(f"apptainer inspect failed: {detail}") from None
    except (GearError, OSError):   # not installed here (a login node without Apptainer)
        raise ManifestUnavailable(f"{apptainer} is not available on this machine") from None
    return parse_inspect(result.stdout)


# ---------------------------------------------------------------- at build time, inside the image

def _os_release() -> str | None:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip().strip('"')
    except OSError:
        pass
    return None


def _pip_list() -> dict[str, str]:
    """What `pip list` shows: every distribution on sys.path, the first of each name winning."""
    import importlib.metadata
    import re

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key not in found:
            found[key] = dist.version
    return dict(sorted(found.items()))


def _debian(packages: Sequence[str]) -> dict[str, str]:
    import subprocess

    if not packages:
        return {}
    # dpkg-query -W fails for a package that is not installed: ask one by one.
    found = {}
    for package in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                              check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            found[package] = proc.stdout.strip()
    return found


def collect(debian_packages: Sequence[str] = ()) -> dict[str, str]:
    """The labels for the image this runs in."""
    import platform

    labels = {PYTHON: platform.python_version(),
              PIP: " ".join(f"{name}=={version}" for name, version in _pip_list().items())}
    os_name = _os_release()
    if os_name:
        labels[OS] = os_name
    debian = _debian(debian_packages)
    if debian:
        labels[DEBIAN] = " ".join(f"{name}={version}" for name, version in debian.items())
    return labels


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    form = "json"
    if len(args) >= 2 and args[0] == "--format":
        form = args[1]
        args = args[2:]
    if form not in ("json", "apptainer"):
        print("usage: python3 image_manifest.py [--format json|apptainer] [DEBIAN_PACKAGE ...]", file=sys.stderr)
        return 2
    labels = collect(args)
    if form == "json":
        print(json.dumps(labels, indent=1, sort_keys=True))
    else:
        for key, value in sorted(labels.items()):
            print(f"{key} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
