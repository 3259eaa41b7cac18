"""The Open OnDemand app (ood/): its submissions become gear workspaces.

OnDemand submits a batch-connect session with its scheduler adapter, which
runs `sbatch ARGS… --parsable` with the session's script on stdin and
`-D STAGED_ROOT` (the directory where it rendered the app's `template/`).
The site points the adapter's `sbatch` at `gear ood-submit`
(`bin_overrides`, docs/ood.md). Here:

- a submission whose staged directory has no `gear-ood.json` is not ours: it
  goes to the real sbatch unchanged (other apps keep working);
- otherwise the form's values (rendered into `gear-ood.json` as JSON, never
  into a shell script) are checked against the site configuration, and a
  workspace execution (mode jupyter) is recorded and submitted exactly as
  `gear jupyter` does it, by the user, on the submitting side. Its payload is
  the app's `script.sh` (inside the image), which writes OnDemand's
  `connection.yml` (host, port, password = the workspace's token) and starts
  JupyterLab under OnDemand's proxy path `/node/HOST/PORT/`;
- the output is sbatch's: the Slurm job id (`--parsable`) or
  `Submitted batch job N`, so OnDemand tracks, shows and cancels the job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base.errors import UsageError
from ..base.names import check_name
from ..executions import lifecycle as executions, workspaces
from ..ledger.db import Execution
from ..site.model import Site
from ..slurm.apptainer import Mount
from ..storage.disk import UserStorage
from . import sbatch_args

MARKER = "gear-ood.json"
SCRIPT = "script.sh"
NOTES = "gear-ood-notes"
MAX_BINDINGS = 5


def staged_root(argv: list[str]) -> Path | None:
    """The -D/--chdir directory of an sbatch command line, if any."""
    for i, arg in enumerate(argv):
        if arg in ("-D", "--chdir") and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--chdir="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("-D") and len(arg) > 2:
            return Path(arg[2:])
    return None


def output_path(argv: list[str], root: Path) -> Path:
    """Where OnDemand expects the job's output (sbatch -o/--output; OnDemand: ROOT/output.log)."""
    value = None
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--output="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
    if not value or "%" in value:  # no Slurm filename patterns here: gear names its own log
        return root / "output.log"
    path = Path(value)
    return path if path.is_absolute() else root / path


def is_ours(argv: list[str]) -> bool:
    root = staged_root(argv)
    return root is not None and (root / MARKER).is_file()


def seconds(limit: str) -> int:
    """A Slurm time limit ([D-]HH:MM:SS, MM:SS, or minutes) in seconds."""
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        total = parts[0] * 60
    elif len(parts) == 2:
        total = parts[0] * 60 + parts[1]
    else:
        total = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return total + int(days or 0) * 86400


def jupyter_images(site: Site) -> tuple[str, ...]:
    """The images the form offers (they serve JupyterLab), the site's Jupyter default first."""
    return site.jupyter.portal_images(site.default_image)


def form_options(site: Site) -> dict[str, Any]:
    """What form.yml.erb offers beside `gear types --json` (`gear ood-submit --form-options`)."""
    images = jupyter_images(site)
    return {"default_image": images[0],
            "images": [{"name": name, "description": site.images[name].description} for name in images]}


@dataclasses.dataclass
class Form:
    compute_type: str
    image: str
    container: str
    bindings: list[str]
    hours: int


def read_form(site: Site, root: Path) -> Form:
    """The session's form values, checked against the site (nothing is created here)."""
    try:
        data = json.loads((root / MARKER).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the OnDemand form values in {root / MARKER}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{root / MARKER}: expected a JSON object")

    def text(key: str) -> str:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise UsageError(f"OnDemand form: {key} must be text")
        return value.strip()

    offered = list(site.compute_types)
    compute_type = text("compute_type")
    if compute_type not in site.compute_types:
        raise UsageError(f"compute type {compute_type!r} is not offered by this site's OnDemand form "
                         f"(offered: {', '.join(offered)})")
    images = jupyter_images(site)
    image = text("image") or images[0]
    if image not in images:
        raise UsageError(f"image {image!r} is not offered by this site's OnDemand form: it does not serve "
                         f"JupyterLab here (offered: {', '.join(images)}; site.yaml jupyter.images)")
    container = check_name(text("container") or workspaces.DEFAULT_CONTAINER, "container name")
    raw = data.get("bindings", [])
    if isinstance(raw, str):
        raw = raw.splitlines()
    if not isinstance(raw, list) or not all(isinstance(b, str) for b in raw):
        raise UsageError("OnDemand form: bindings must be text, one per line")
    bindings = [b.strip() for b in raw if b.strip()]
    if len(bindings) > MAX_BINDINGS:
        raise UsageError(f"OnDemand form: at most {MAX_BINDINGS} bindings")
    hours_text = str(data.get("hours", "1")).strip()
    if not re.fullmatch(r"[0-9]{1,4}", hours_text):
        raise UsageError(f"OnDemand form: hours {hours_text!r}: expected a whole number")
    hours = int(hours_text)
    limit = seconds(site.compute_types[compute_type].time_limit)
    if not 1 <= hours or hours * 3600 > limit:
        raise UsageError(f"OnDemand form: hours must be from 1 to {limit // 3600} on {compute_type} "
                         f"(its time limit is {site.compute_types[compute_type].time_limit})")
    return Form(compute_type, image, container, bindings, hours)


def _with_hours(site: Site, form: Form) -> Site:
    """The site as this submission sees it: the compute type's time limit is the form's hours."""
    compute_type = dataclasses.replace(site.compute_types[form.compute_type], time_limit=f"{form.hours:02d}:00:00")
    return dataclasses.replace(site, compute_types={**site.compute_types, form.compute_type: compute_type})


def start(site: Site, storage: UserStorage, root: Path,
          notice: Callable[[str], None] = lambda message: None, argv: list[str] | None = None,
          script: str = "") -> Execution:
    """Record and submit the workspace of an OnDemand session whose files OnDemand staged in `root`.

    `argv` and `script` are OnDemand's sbatch arguments and job script (sbatch_args.py):
    what gear does not honour is refused here, or noted in the session's log.
    sbatch -o (OnDemand's ROOT/output.log) becomes a link to the job's log.
    """
    argv = list(argv or ())
    root = root.resolve()
    form = read_form(site, root)
    notes = sbatch_args.check(argv, form.hours, local_cluster)
    if not (root / SCRIPT).is_file():
        raise UsageError(f"{root / SCRIPT} does not exist: is the app's template/ installed?")
    for name in (root, root / SCRIPT):
        if any(c in str(name) for c in ":,\n\r\0"):
            raise UsageError(f"OnDemand's staged directory {str(root)!r} has a character apptainer cannot bind")
    if script.strip():
        _write_private(root / "ondemand-script.sh", script)
        notes.append(sbatch_args.SCRIPT_NOTE)
    _write_private(root / NOTES, "".join(f"{note}\n" for note in notes))  # script.sh prints them
    storage.ensure()
    token, token_file = workspaces.new_token(storage)
    request = None
    try:
        request = workspaces.build_request(
            site, storage, container=form.container, compute_type=form.compute_type, image=form.image,
            bindings=form.bindings, code=None, message=f"OnDemand session {root.name}", idle_timeout=None,
            port=None, token_file=token_file)
        workspace = request.workspace
        assert workspace is not None
        # The payload is the app's script.sh: it writes connection.yml, then runs JupyterLab
        # (gear's argv, under OnDemand's proxy path, which it adds).
        argv = [a for a in request.command if not a.startswith("--ServerApp.base_url=")]
        request.command = ["bash", str(root / SCRIPT), *argv]
        staged = Mount(str(root), str(root), read_only=False)
        request.workspace = dataclasses.replace(workspace, mounts=(*workspace.mounts, staged))
        execution = executions.submit(_with_hours(site, form), storage, request, notice=notice)
    except BaseException:
        token_file.unlink(missing_ok=True)
        raise
    finally:
        if request is not None:
            try:
                Path(request.code).rmdir()
            except OSError:
                pass
    exec_dir = Path(execution.workdir).parent
    links = [(exec_dir / "jupyter-token", token_file), (root / "gear-output.log", exec_dir / "output.log"),
             (output_path(argv, root), exec_dir / "output.log")]
    for link, target in links:
        try:
            link.symlink_to(target)
        except OSError:
            pass
    (root / "gear-execution").write_text(execution.id + "\n")
    return execution


def local_cluster() -> str | None:
    """The name of the Slurm cluster gear submits to (scontrol show config: ClusterName)."""
    from ..slurm.jobs import _bin

    try:
        out = subprocess.run([_bin("scontrol"), "show", "config"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"^ClusterName\s*=\s*(\S+)", out, re.MULTILINE)
    return found.group(1) if found else None


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def clean_environment() -> None:
    """OnDemand runs sbatch with SBATCH_EXPORT=NONE and friends: they are for its script, not gear's."""
    for key in [k for k in os.environ if k.startswith("SBATCH_")]:
        del os.environ[key]


def sbatch_output(job_id: str, argv: list[str]) -> str:
    return job_id if "--parsable" in argv else f"Submitted batch job {job_id}"


def passthrough(argv: list[str]) -> Any:
    """Not an OnDemand session of this app: the real sbatch, unchanged (stdin untouched)."""
    from ..slurm.jobs import _bin

    sbatch = _bin("sbatch")
    os.execvp(sbatch, [sbatch, *argv])
