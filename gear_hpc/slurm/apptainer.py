"""The argument list of `apptainer exec` for one execution, with the Gear layout."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

HOME = "/hyperai/home"
OUTPUT = "/output"
INPUT_SLOTS = tuple(f"/hyperai/input/input{k}" for k in range(5))
# The same inputs where OpenBayes's Gear puts them: a program that opens /input0 in its own code runs unchanged.
INPUT_ALIASES = tuple(f"/input{k}" for k in range(5))


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = True


def mount_option(mount: Mount) -> str:
    """One `--mount` value. Unlike `--bind src:dst`, its CSV form can carry a
    path with ',' or ':' (apptainer #5923, #5959): csv quotes such a field."""
    out = io.StringIO()
    fields = ["type=bind", f"src={mount.source}", f"dst={mount.target}"]
    if mount.read_only:
        fields.append("ro")
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def exec_argv(apptainer: str, image: str, home: str, inputs: dict[str, str], empty_dir: str,
              command: Sequence[str], gpu: bool, extra_mounts: Sequence[Mount] = ()) -> list[str]:
    """`apptainer exec` with /hyperai/home = /output writable, and input0-4 read-only (also at /input0-4).

    --containall gives the job its own /tmp, no $HOME and a clean environment;
    the batch script passes GEAR_* and SLURM_* variables in via APPTAINERENV_.
    Slots without a binding get an empty read-only directory so that every
    path of the layout exists in any image.
    """
    argv = [apptainer, "exec", "--containall", "--pwd", HOME]
    if gpu:
        argv.append("--nv")
    mounts = [Mount(home, HOME, read_only=False), Mount(home, OUTPUT, read_only=False)]
    for slot, alias in zip(INPUT_SLOTS, INPUT_ALIASES, strict=True):
        mounts.append(Mount(inputs.get(slot, empty_dir), slot, read_only=True))
        mounts.append(Mount(inputs.get(slot, empty_dir), alias, read_only=True))
    mounts.extend(extra_mounts)  # a workspace's host paths (site.yaml jupyter.binds)
    for mount in mounts:
        argv += ["--mount", mount_option(mount)]
    argv.append(image)
    argv.extend(command)
    return argv
