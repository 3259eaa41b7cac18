"""gear's own Python for programs in an execution (`gear_metrics`, `openbayestool`).

The modules (gear_hpc/job_python/, standard library only) are copied into
each execution's directory, `lib/`, and bound read-only into the container at
/opt/gear/python, which the job puts first on PYTHONPATH, before whatever the
image's own environment sets. So any image with a Python has them, and a site
that brings its own images has nothing to add; the copy keeps what the
execution ran with, whatever gear is installed later.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..slurm.apptainer import Mount

LIB = "lib"                            # in an execution's directory
IN_CONTAINER = "/opt/gear/python"      # where the job binds it
SOURCE = Path(__file__).resolve().parent.parent / "job_python"
MODULES = ("gear_metrics.py", "openbayestool.py")
# The container's PYTHONPATH, as Apptainer expands it inside the container after the image's own environment
# (its %environment): ours first, then the image's, so packages an image puts on PYTHONPATH stay
# importable. First, because our openbayestool writes gear's metrics: a stale copy in an image must not shadow
# it. `:+`: with no PYTHONPATH in the image, no trailing ':' (an empty entry, which Python reads as the
# current directory).
PYTHONPATH = IN_CONTAINER + "${PYTHONPATH:+:$PYTHONPATH}"


def install_lib(exec_dir: Path) -> Path:
    """Put the modules in exec_dir/lib (a sweep's trials all bind the first trial's)."""
    lib = exec_dir / LIB
    lib.mkdir(mode=0o700)
    for name in MODULES:
        shutil.copyfile(SOURCE / name, lib / name)
    return lib


def job_mount(lib: Path) -> tuple[Mount, tuple[str, str]]:
    """The container's mount of `lib`, and the PYTHONPATH that makes its modules importable."""
    return Mount(str(lib), IN_CONTAINER, read_only=True), ("PYTHONPATH", PYTHONPATH)
