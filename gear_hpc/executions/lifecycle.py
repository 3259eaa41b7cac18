"""Executions: submit and continue (stop.py stops; status is folded in by reconcile.py).

The way of one execution: validate everything, take a number and a directory
(ledger + storage), snapshot the code, render the batch script, submit it.
Any failure before Slurm has the job removes the row and the directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base.errors import GearError, SlurmError, UsageError
from ..base.names import check_name, check_text
from ..data.bindings import Binding
from ..ledger.db import Execution, Ledger, utc_now
from ..notify import settings as notify
from ..site.model import ComputeType, Image, Site
from ..slurm import jobs as slurm
from ..storage.disk import UserStorage, remove_tree
from .reconcile import discard, get, refresh
from .request import RunRequest as RunRequest  # importable from here
from .workspace_job import Workspace

KILL_AFTER_SECONDS = 20


def default_container_name(code: Path) -> str:
    """The container name gear picks when -c is not given: the code directory's name."""
    base = code.resolve().name if code.is_dir() else code.resolve().parent.name
    name = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._")[:64]
    if not name:
        raise UsageError("cannot derive a container name from the code directory; name one with -c")
    return name


def parse_param(text: str) -> tuple[str, Any]:
    """K=V; V is read as JSON when it is a number, boolean, null, list or object, else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"invalid --param {text!r}: expected KEY=VALUE")
    check_text(key, f"parameter name {key!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, str):
        parsed = value  # keep "x" and '"x"' as the user wrote them
    return key, parsed


def submit(site: Site, storage: UserStorage, request: RunRequest,
           notice: Callable[[str], None] = lambda message: None,
           on_progress: Callable[[Any], None] | None = None) -> Execution:
    """Create a script execution and submit it; returns its ledger record.

    `notice` hears, before the job is submitted, what the user should know
    (for example uploaded files that the copied working directory overrides).
    `on_progress` hears how the code snapshot goes (staging.Progress).
    """
    if not request.command:
        raise UsageError("no command given: put it after --, for example: gear run -- python train.py")
    for arg in request.command:
        check_text(arg, "the command")
    if request.message is not None:
        check_text(request.message, "the message")
    from ..data import bindings as binding_specs
    from ..slurm.apptainer import HOME

    specs = binding_specs.parse_all(request.bindings)
    code = Path(request.code)
    if not code.exists():
        raise UsageError(f"code path {code} does not exist")
    if request.code_unnamed:
        check_code_size(site, code)
    container = check_name(request.container if request.container is not None else default_container_name(code),
                           "container name")
    compute_type = site.compute_type(request.compute_type or site.default_compute_type)
    image = site.image(request.image or site.default_image)
    if not os.path.exists(image.path):
        raise GearError(f"image {image.name!r}: {image.path} does not exist on this node; tell your admin")

    storage.ensure()
    token = os.urandom(8).hex()   # secrets.token_hex(8), without importing secrets (hmac, hashlib: 4 ms)
    with Ledger(storage.ledger_path) as ledger:
        if any(spec.is_execution for spec in specs):
            refresh(ledger)  # a source execution must be closed: know its latest status
        resolved = binding_specs.resolve(specs, ledger, storage, storage.user)
        parent = _resolve_parent(ledger, request, container)
        if parent is not None and request.home_layer and any(b.target == HOME for b in resolved):
            raise UsageError("a continued execution already starts from its parent's working directory; "
                             "use --no-home to copy another one into /hyperai/home")
        made: list[Path] = []   # what make_dir created, removed if the row is not recorded

        def make_dir(number: int) -> Path:
            if not storage.container_dir(container).is_dir():
                storage.container_dir(container).mkdir(mode=0o700, parents=True)
                made.append(storage.container_dir(container))
            storage.execution_dir(container, number).mkdir(mode=0o700)
            made.append(storage.execution_dir(container, number))
            return storage.execution_dir(container, number) / "home"

        try:
            number = ledger.allocate_execution(
                container, make_dir, mode=request.mode, status="submitting", compute_type=compute_type.name,
                image=image.name, command=request.command, params=request.params,
                bindings=[b.to_json() for b in resolved], message=request.message, token=token,
                parent=parent.id if parent else None)
        except BaseException:
            # No row (the transaction rolled back): no directory either, or the
            # next run would skip its number and nothing could delete it.
            for path in reversed(made):
                try:
                    remove_tree(path)
                except OSError:
                    pass
            raise
        exec_dir = storage.execution_dir(container, number)
        try:
            home_layer = parent if parent is not None and request.home_layer else None
            _prepare(site, storage, exec_dir, container, number, token, code, compute_type, image, request,
                     resolved, home_layer, on_progress)
            if request.code_uploaded:
                _notice_collisions(exec_dir / "code", resolved, notice, home_layer)
            job_id = slurm.submit(exec_dir / "job.sh", request.sbatch_options)
        except slurm.SubmitTimeout:
            found = _find_job_by_token(token)
            if found is None:
                _discard(ledger, exec_dir, container, number)
                raise
            job_id = found
        except BaseException:
            _discard(ledger, exec_dir, container, number)
            raise
        ledger.update_execution(container, number, status="queued", slurm_job_id=job_id, submitted_at=utc_now())
        execution = ledger.get_execution(container, number)
    assert execution is not None
    from .quick_submit import remember

    remember(site, storage.user)   # what the lean submission of the next one needs (quick_submit.py)
    return execution


def _discard(ledger: Ledger, exec_dir: Path, container: str, number: int) -> None:
    """reconcile.discard, never hiding the error under way (a full disk can fail both)."""
    try:
        discard(ledger, exec_dir, container, number)
    except Exception:
        pass  # a "submitting" row left behind is discarded by the next refresh once expired
    try:
        # exec_dir is <root>/users/<user>/containers/<container>/<n>
        notify.forget_execution(UserStorage(exec_dir.parents[4], exec_dir.parents[2].name), container, number)
    except Exception:
        pass


def check_code_size(site: Site, code: Path) -> None:
    """Refuse a current directory too big to be the code (site.yaml code_limit), counting no further than that."""
    from ..base.sizes import human_size
    from ..data.staging import count_code

    limit = site.code_limit
    counted = count_code(code, limit.files, limit.bytes)
    if counted.over:
        what = (f"more than {limit.files:,} files" if counted.files > limit.files
                else f"more than {human_size(limit.bytes)} (in {counted.files:,} files)")
        raise UsageError(f"the current directory {code.resolve()} has {what}, this site's limit for code uploaded "
                         "without --code; name the code with --code DIR, or put data in a dataset: gear data upload")


def _notice_collisions(code: Path, bindings: list[Binding], notice: Callable[[str], None],
                       home_layer: Execution | None) -> None:
    from ..data.staging import collisions
    from ..slurm.apptainer import HOME

    sources = [(b.source, b.path) for b in bindings if b.target == HOME]
    if home_layer is not None:
        sources.append((home_layer.id, home_layer.workdir))
    for source, path in sources:
        kept = collisions(code, Path(path))
        if kept:
            notice(f"{len(kept)} uploaded file(s) already exist in {source}'s working directory; "
                   f"its version is kept and the upload ignored: {', '.join(kept)}")


def _resolve_parent(ledger: Ledger, request: RunRequest, container: str) -> Execution | None:
    if request.parent is None:
        return None
    from ..base.names import parse_execution_id

    parent_container, number = parse_execution_id(request.parent)
    if parent_container != container:
        raise UsageError(f"{request.parent} continues in its own container {parent_container!r}, not {container!r}")
    refresh(ledger)
    parent = get(ledger, parent_container, number)
    if parent.is_open:
        raise GearError(f"{parent.id} is still {parent.status}; it can be continued once it has ended "
                        f"(or stop it: gear stop {parent.id})")
    if request.home_layer and not Path(parent.workdir).is_dir():
        raise GearError(f"{parent.id} has no saved working directory to continue from; use --no-home")
    return parent


def continue_request(ledger: Ledger, container: str, number: int, *, command: list[str] | None = None,
                     code: Path | None = None, compute_type: str | None = None, image: str | None = None,
                     params: dict[str, Any] | None = None, message: str | None = None,
                     bindings: list[str] | None = None, home: str = "layer") -> RunRequest:
    """The request that continues C/N (docs/cli.md, `gear continue C/N`): its bindings, code, command and
    parameters, each overridden by what is given, starting from its working directory.

    `home` is "layer" (start from C/N's working directory), "none" (start
    empty) or "inputK" (bind C/N's working directory read-only there).
    """
    from ..data import bindings as binding_specs
    from ..slurm.apptainer import HOME
    from .sweep import code_of

    parent = get(ledger, container, number)
    given = binding_specs.parse_all(bindings or [])
    taken = {spec.target for spec in given}
    specs = [spec.text for spec in given]
    for recorded in parent.bindings:
        if recorded["target"] != HOME and recorded["target"] not in taken:
            specs.append(f"{recorded['source']}:{recorded['target']}")
            taken.add(recorded["target"])
    if home not in ("layer", "none"):
        slot = binding_specs.parse(f"{parent.id}:{home}").target
        if slot in taken:
            raise UsageError(f"--home-as {home}: {slot} is already taken by another binding")
        specs.append(f"{parent.id}:{home}")
    # A workspace continued WITH a command runs that command as a script from
    # its working directory; without one, it is a workspace again.
    mode = "script" if parent.mode == "jupyter" and command else parent.mode
    return RunRequest(
        command=list(command) if command else list(parent.command),
        code=code if code is not None else code_of(ledger, parent),
        container=container,
        compute_type=compute_type or parent.compute_type,
        image=image or parent.image,
        params={**parent.params, **(params or {})},
        message=message,
        bindings=specs,
        mode=mode,
        parent=parent.id,
        home_layer=home == "layer",
        code_uploaded=code is not None,
    )


def _job_comment(container: str, number: int, token: str) -> str:
    # The comment ties the Slurm job to its ledger row, so a command that
    # died between submit and record can be reconciled.
    return f"gear:{container}/{number}:{token}"


def _prepare(site: Site, storage: UserStorage, exec_dir: Path, container: str, number: int, token: str,
             code: Path, compute_type: ComputeType, image: Image, request: RunRequest,
             bindings: list[Binding], home_layer: Execution | None = None,
             on_progress: Callable[[Any], None] | None = None) -> None:
    """Everything the job needs on disk: code snapshot, parameters, empty input dir, script."""
    from ..data import staging

    staging.snapshot_code(code, exec_dir / "code", on_progress)
    for relative, text in request.generated_files.items():  # e.g. a notebook's script (gear run -- x.ipynb)
        (exec_dir / "code" / relative).write_text(text)
    (exec_dir / "gear_params.json").write_text(json.dumps(request.params, indent=2) + "\n")
    (exec_dir / "empty").mkdir(mode=0o500)
    from .job_lib import install_lib

    python_lib = install_lib(exec_dir)   # gear_metrics and openbayestool for the program
    kept = True
    if home_layer is not None:
        from .sealing import is_sealed, seal

        # A parent closed before saved directories were sealed is sealed now,
        # before anything can share its files.
        home = Path(home_layer.workdir)
        kept = is_sealed(home) or seal(home)
    (exec_dir / "job.sh").write_text(job_script(site, exec_dir, container, number, token, compute_type,
                                                image, request.command, storage.user, bindings,
                                                home_layer, workspace=request.workspace, layer_modes_kept=kept,
                                                python_lib=python_lib, log_copies=request.log_copies()))
    if site.mail.enabled:
        # The proof gear-mailprog asks for before it sends gear's mail about this job (notify/settings.py).
        notify.register_execution(storage, container, number, token)


def job_script(site: Site, exec_dir: Path, container: str, number: int, token: str,
               compute_type: ComputeType, image: Image, command: list[str], user: str,
               bindings: list[Binding] = (),  # type: ignore[assignment]
               home_layer: Execution | None = None, workspace: Workspace | None = None,
               layer_modes_kept: bool = True, python_lib: Path | None = None,
               log_copies: tuple[bool, bool] = (False, False)) -> str:
    """The batch script of one execution (a pure function of its inputs).

    `layer_modes_kept`: the parent of a continuation was sealed with its modes
    kept (sealing.py), so an overlay can show them; without, it is copied.

    A `workspace` (mode jupyter, see workspaces.py) renders jupyter.sh.j2, which
    extends job.sh.j2 and only replaces how the payload starts.
    """
    from ..slurm.apptainer import HOME, exec_argv
    from ..slurm.render import render

    home = exec_dir / "home"
    scratch = site.workdir.mode == "scratch"
    # Node-local scratch path: fixed at submit time, unique per execution.
    work = Path(site.workdir.scratch_dir or "") / f"gear-{user}-{container}-{number}-{token}" if scratch else home
    inputs = {b.target: b.path for b in bindings if b.target != HOME}
    home_binding = next((b for b in bindings if b.target == HOME), None)
    layer = None
    if home_layer is not None:
        if scratch or not layer_modes_kept:
            # On node-local scratch (or where the parent's modes could not be
            # kept for an overlay to show) the parent's directory is copied in.
            home_binding = Binding(home_layer.id, HOME, False, "execution", home_layer.workdir)
        else:
            # On shared storage it is the read-only lower layer of an overlay
            # (no copy at start); see the template.
            layer = home_layer
            work = exec_dir / "merged"
    options: list[tuple[str, Any]] = [
        ("job-name", f"gear-{container}-{number}"),
        ("partition", compute_type.partition),
        ("nodes", 1),
        ("ntasks", 1),
        ("cpus-per-task", compute_type.cpus),
        ("mem", compute_type.memory),
        ("time", compute_type.time_limit),
    ]
    if compute_type.gres:
        options.append(("gres", compute_type.gres))
    for key in ("qos", "account", "constraint"):
        if getattr(compute_type, key):
            options.append((key, getattr(compute_type, key)))
    options += [
        ("chdir", exec_dir),
        ("output", exec_dir / "output.log"),
        ("open-mode", "append"),
        ("comment", _job_comment(container, number, token)),
        # B: sends the warning to the batch shell itself, where the trap is.
        ("signal", f"B:USR1@{site.time_limit_warning}"),
    ]
    # Slurm's mail to the owner (--mail-type/--mail-user, SMS number in --extra).
    mail = notify.for_job(site, user)
    options += mail.sbatch_options
    environment = [("GEAR_CONTAINER", container), ("GEAR_EXECUTION", f"{container}/{number}"),
                   ("GEAR_EXECUTION_NUMBER", str(number)), ("GEAR_USER", user),
                   ("GEAR_COMPUTE_TYPE", compute_type.name), ("GEAR_IMAGE", image.name)]
    if workspace is not None:
        environment += workspace.environment
    mounts = list(workspace.mounts) if workspace is not None else []
    if python_lib is not None:
        # `python_lib`: gear's modules for the program (job_lib.py: gear_metrics, openbayestool).
        from .job_lib import job_mount

        lib_mount, pythonpath = job_mount(python_lib)
        mounts.append(lib_mount)
        environment.append(pythonpath)
    argv = exec_argv(site.apptainer, image.path, str(work), inputs, str(exec_dir / "empty"), command,
                     gpu=compute_type.gpus > 0, extra_mounts=mounts)
    return render("job.sh.j2" if workspace is None else "jupyter.sh.j2", workspace=workspace,
                  execution_id=f"{container}/{number}", sbatch_options=options,
                  exec_dir=str(exec_dir), home=str(home), work=str(work), environment=environment,
                  apptainer_argv=argv, kill_after=KILL_AFTER_SECONDS, report_extra=mail.report_extra,
                  scratch=scratch, save_interval=site.workdir.save_interval,
                  home_source=home_binding.path if home_binding else None,
                  home_source_id=home_binding.source if home_binding else None,
                  home_layer=layer.workdir if layer else None, home_layer_id=layer.id if layer else None,
                  copy_stdout=log_copies[0], copy_stderr=log_copies[1])


def _find_job_by_token(token: str) -> str | None:
    try:
        jobs = slurm.query_jobs()
    except SlurmError:
        return None
    for job in jobs.values():
        if job.comment.endswith(f":{token}"):
            return job.job_id
    return None
