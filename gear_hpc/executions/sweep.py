"""A sweep: many executions of one container, submitted as ONE Slurm job array.

Each trial is an ordinary execution C/N (its own directory, row, job script,
`gear_params.json`, and its values as `--name=value` arguments): listed,
continued, downloaded, stopped and deleted like any other. What the trials
share lives in the first one's directory:

    C/<first>/code/            the code, snapshot once (the others' `code` is a link to it)
    C/<first>/sweep/job.sh     the array's batch script: task I runs C/<first+I>/job.sh
    C/<first>/sweep/task.sh    the trials' job script, with stand-ins for number, task id and arguments
    C/<first>/sweep/trials     one line per trial: task id, number, its arguments shell-quoted
    C/<first>/sweep/tasks/I    a link to C/<first+I>, so Slurm's --output=…/tasks/%a/output.log
                               lands in each execution's own output.log (only when task ids
                               cannot be the executions' numbers)
    C/<first>/sweep/tuning.json  what was asked (gear tune show reads it)

A trial's own job.sh is written by its task when it starts (task.sh with its
line of `trials` put in), not at submission: a 1,000-trial sweep then costs
three file operations per trial (directory, code link, gear_params.json),
which is what its submission time is made of. A requeued task runs the
job.sh its first start wrote. A trial whose script cannot come from task.sh
(a `bash -c` command carries its arguments inside a string) gets its job.sh
at submission, as an ordinary execution does.

The rows and directories of all trials are written in one transaction
(rows `submitting`); a failure before Slurm has the array removes all of
them; a command that dies after it leaves rows the next refresh adopts by
the array's comment token, or removes whole after five minutes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..base.errors import GearError, SlurmError, UsageError
from ..base.names import check_name, check_text
from ..ledger.db import Ledger, utc_now
from ..ledger.rows import JSON_COLUMNS
from ..notify import settings as notify
from ..site.model import Site
from ..slurm import jobs as slurm
from ..storage.disk import UserStorage, remove_tree
from . import lifecycle

SWEEP_DIR = "sweep"
TUNING_FILE = "tuning.json"
TASK_SCRIPT = "task.sh"      # the trials' job script, stand-ins in place
TRIALS_FILE = "trials"       # per trial: task id, number, arguments
# What task.sh holds in place of a trial's number, task id and arguments: text that appears nowhere else.
STAND_INS = ("987650001", "987650002", "--gear-trial-arguments-987650003")


@dataclass
class SweepRequest:
    base: lifecycle.RunRequest               # command, code, container, type, image, bindings, message, params
    trials: list[dict[str, Any]]             # each trial's parameter values
    parallel: int | None = None              # at most this many tasks at once (--array=…%P)
    tuning: dict[str, Any] = field(default_factory=dict)   # what was asked, for gear tune show
    # gear sbatch --array: the user's --array value and the task ids it names (default: 0 … N-1, one per trial).
    array: str | None = None
    indices: list[int] | None = None


@dataclass
class Sweep:
    container: str
    first: int
    count: int
    slurm_job_id: str

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    @property
    def ids(self) -> list[str]:
        return [f"{self.container}/{n}" for n in range(self.first, self.first + self.count)]

    def to_json(self) -> dict[str, Any]:
        return {"container": self.container, "first": self.first, "last": self.last, "count": self.count,
                "slurm_job_id": self.slurm_job_id, "executions": self.ids}


def submit(site: Site, storage: UserStorage, request: SweepRequest,
           notice: Callable[[str], None] = lambda message: None) -> Sweep:
    """Create every trial's execution and submit them as one job array."""
    base = request.base
    if not request.trials:
        raise UsageError("the sweep has no trials")
    if not base.command:
        raise UsageError("no command given: put it after --, for example: gear run --param lr=0.1,0.01 -- python3 train.py")
    for arg in base.command:
        check_text(arg, "the command")
    if base.message is not None:
        check_text(base.message, "the message")
    if request.parallel is not None and request.parallel < 1:
        raise UsageError("the number of trials at once must be at least 1")
    from ..data import bindings as binding_specs
    from ..tuning.spec import trial_command

    commands = [trial_command(base.command, trial) for trial in request.trials]
    for command in commands:
        for arg in command:
            check_text(arg, "a trial's value")
    specs = binding_specs.parse_all(base.bindings)
    code = Path(base.code)
    if not code.exists():
        raise UsageError(f"code path {code} does not exist")
    if base.code_unnamed:
        lifecycle.check_code_size(site, code)
    container = check_name(base.container if base.container is not None else lifecycle.default_container_name(code),
                           "container name")
    compute_type = site.compute_type(base.compute_type or site.default_compute_type)
    image = site.image(base.image or site.default_image)
    if not os.path.exists(image.path):
        raise GearError(f"image {image.name!r}: {image.path} does not exist on this node; tell your admin")
    # Slurm mails about an array as a whole (one mail when its first task starts, one when the last ends),
    # not per task: the trials' scripts carry no mail options, the array's script the owner's (array_script).
    quiet_site = replace(site, mail=replace(site.mail, enabled=False))

    storage.ensure()
    token = secrets.token_hex(8)
    count = len(request.trials)
    # Task ids are the executions' numbers when Slurm allows ids that high (squeue's 123_17 is C/17, and
    # Slurm writes C/17/output.log itself); else 0 … N-1, with links from sweep/tasks/I to each directory.
    below = slurm.max_array_size() if request.indices is None else None
    with Ledger(storage.ledger_path) as ledger:
        if any(spec.is_execution for spec in specs):
            from .reconcile import refresh

            refresh(ledger)
        resolved = binding_specs.resolve(specs, ledger, storage, storage.user)
        rows = [dict(mode="script", status="submitting", compute_type=compute_type.name, image=image.name,
                     command=commands[i], params={**base.params, **trial},
                     bindings=[b.to_json() for b in resolved], message=base.message)
                for i, trial in enumerate(request.trials)]
        first, tasks = _allocate(ledger, storage, container, rows, token, request.indices, below)
        numbers = range(first, first + count)
        exec_dirs = [storage.execution_dir(container, n) for n in numbers]
        sweep_dir = exec_dirs[0] / SWEEP_DIR
        last = first + count - 1
        try:
            _prepare(quiet_site, storage, container, first, token, code, compute_type, image, base, resolved,
                     rows, exec_dirs, request, tasks, notify.for_job(site, storage.user).sbatch_options)
            if site.mail.enabled:
                # The proof gear-mailprog asks for before it sends gear's mail about this array (notify/settings.py).
                notify.register_sweep(storage, container, first, last, token)
            job_id = slurm.submit(sweep_dir / "job.sh", base.sbatch_options)
        except slurm.SubmitTimeout:
            found = _find_array(token)
            if found is None:
                _discard(ledger, storage, container, exec_dirs)
                raise
            job_id = found
        except BaseException:
            _discard(ledger, storage, container, exec_dirs)
            raise
        now = utc_now()
        with ledger.transaction() as conn:
            conn.executemany("UPDATE executions SET status = 'queued', slurm_job_id = ?, submitted_at = ? "
                             "WHERE container = ? AND number = ?",
                             [(f"{job_id}_{task}", now, container, n) for task, n in zip(tasks, numbers, strict=True)])
    return Sweep(container, first, count, job_id)


def _allocate(ledger: Ledger, storage: UserStorage, container: str, rows: list[dict[str, Any]], token: str,
              indices: list[int] | None, below: int | None) -> tuple[int, list[int]]:
    """Take len(rows) consecutive numbers, make their directories and record the rows: one transaction.

    Returns the first number and each row's task id: `indices` if given, else
    the numbers themselves when they are below `below` (MaxArraySize), else
    0 … N-1. A row's token is the sweep's, dot, its task id (what reconcile
    adopts a row by). A failure part-way removes the directories made (the
    rows roll back with the transaction): no half sweep. Numbers whose
    directory exists (left by a crash) are skipped, never reused.
    """
    made: list[Path] = []
    container_dir = storage.container_dir(container)
    try:
        with ledger.transaction() as conn:
            ledger.ensure_container(container)
            first = (conn.execute("SELECT MAX(number) FROM executions WHERE container = ?",
                                  (container,)).fetchone()[0] or 0) + 1
            if not container_dir.is_dir():
                container_dir.mkdir(mode=0o700, parents=True)
                made.append(container_dir)
            existing = {int(name) for name in os.listdir(container_dir) if name.isdigit()}
            while any(n in existing for n in range(first, first + len(rows))):
                first = max(n for n in existing if n < first + len(rows)) + 1
            now = utc_now()
            if indices is not None:
                tasks = list(indices)
            elif below is not None and first + len(rows) - 1 < below:
                tasks = list(range(first, first + len(rows)))
            else:
                tasks = list(range(len(rows)))
            values = []
            for offset, row in enumerate(rows):
                row["token"] = f"{token}.{tasks[offset]}"
                number = first + offset
                exec_dir = storage.execution_dir(container, number)
                exec_dir.mkdir(mode=0o700)
                made.append(exec_dir)
                full = dict(row, container=container, number=number, workdir=str(exec_dir / "home"), created_at=now)
                for key in JSON_COLUMNS:
                    full[key] = json.dumps(full[key])
                values.append(full)
            columns = list(values[0])
            conn.executemany(f"INSERT INTO executions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                             [[row[c] for c in columns] for row in values])
    except BaseException:
        for path in reversed(made):
            try:
                remove_tree(path)
            except OSError:
                pass
        raise
    return first, tasks


def _prepare(site: Site, storage: UserStorage, container: str, first: int, token: str, code: Path,
             compute_type: Any, image: Any, base: lifecycle.RunRequest, bindings: list[Any],
             rows: list[dict[str, Any]], exec_dirs: list[Path], request: SweepRequest, tasks: list[int],
             mail_options: list[tuple[str, str]]) -> None:
    """Every trial's directory (code link, parameters, job script) and the array's script.

    The code is snapshot once, gear's Python modules installed once (job_lib),
    and the job script rendered once (TaskScripts): a 1,000-trial sweep costs
    a few file operations per trial, not 1,000 renders and copies.
    """
    from ..data import staging
    from .job_lib import install_lib

    shared_code = exec_dirs[0] / "code"
    staging.snapshot_code(code, shared_code)
    for relative, text in base.generated_files.items():
        (shared_code / relative).write_text(text)
    python_lib = install_lib(exec_dirs[0])
    sweep_dir = exec_dirs[0] / SWEEP_DIR
    numbered = request.indices is None and tasks[0] == first
    links = str(sweep_dir / "tasks")
    os.makedirs(links, mode=0o700)
    scripts = TaskScripts(site, storage, container, token, compute_type, image, base.command, bindings, python_lib,
                          empty=exec_dirs[0] / "empty", log_copies=base.log_copies())
    # Each trial either takes its line in `trials` (its task makes its code link, gear_params.json and job.sh
    # when it starts) or has them all made now.
    lines = [scripts.line(tasks[i], first + i, row["command"], row["params"]) for i, row in enumerate(rows)]
    first_code = f"../{first}/code"

    def whole_trial(i: int) -> None:
        # Strings, not Paths: at 1,000 trials the joins are a visible part of the time.
        exec_dir, row, number = str(exec_dirs[i]), rows[i], first + i
        if i:
            os.symlink(first_code, exec_dir + "/code")
            os.mkdir(exec_dir + "/empty", 0o500)
        _write(exec_dir + "/gear_params.json", json.dumps(row["params"], indent=2) + "\n")
        _write(exec_dir + "/job.sh", scripts.script(exec_dirs[i], number, row["token"], row["command"]))

    os.mkdir(exec_dirs[0] / "empty", 0o500)   # shared by every trial whose script is task.sh
    whole = [i for i, line in enumerate(lines) if line is None]
    if len(whole) < 64:
        for i in whole:
            whole_trial(i)
    else:
        # A few threads: each trial's files are a handful of metadata operations in a directory of its own,
        # whose waits on the file system (its journal, a server) overlap; the text is made in microseconds.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(whole_trial, whole))   # list(): the first failure is raised here
    if not numbered:
        for task, number in zip(tasks, range(first, first + len(rows)), strict=True):
            os.symlink(f"../../../{number}", f"{links}/{task}")
    template = scripts.template if any(line is not None for line in lines) else None
    if template is not None:
        _write(str(sweep_dir / TASK_SCRIPT), template)
        _write(str(sweep_dir / TRIALS_FILE), "".join(line for line in lines if line is not None))
    (sweep_dir / TUNING_FILE).write_text(json.dumps(
        {**request.tuning, "container": container, "first": first, "count": len(rows),
         "trials": request.trials, "created_at": utc_now()}, indent=2) + "\n")
    array = request.array
    if numbered:
        array = f"{first}-{first + len(rows) - 1}" + (f"%{request.parallel}" if request.parallel else "")
    task_options = template if template is not None else (exec_dirs[0] / "job.sh").read_text()
    (sweep_dir / "job.sh").write_text(array_script(
        task_options, container, first, len(rows), token, sweep_dir, request.parallel,
        array, exec_dirs[0].parent if numbered else None, task_script=template is not None, mail_options=mail_options))


def code_of(ledger: Ledger, execution: Any) -> Path:
    """Where execution C/N's code is: its own `code`, or, for a sweep's trial whose task never started
    (a task links its `code` to the shared one when it starts), the sweep's first trial's."""
    own = Path(execution.workdir).parent / "code"
    if own.exists() or "." not in execution.token:
        return own
    sweep_token = execution.token.rpartition(".")[0]
    first = ledger.conn.execute("SELECT MIN(number) FROM executions WHERE container = ? AND token LIKE ?",
                                (execution.container, f"{sweep_token}.%")).fetchone()[0]
    return own if first is None else own.parent.parent / str(first) / "code"


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class TaskScripts:
    """The job scripts of a sweep's trials, rendered once.

    The trials differ only in their number, token and arguments. The script is
    rendered once (lifecycle.job_script, the template every execution uses)
    with a stand-in number, task and argument that appear nowhere else, and
    each trial's script is that text with the stand-ins replaced: digits for
    the number and task, its arguments shell-quoted for the argument. Where
    that cannot hold (a `bash -c` command carries the arguments inside its
    string; a stand-in already in a name or path) each script is rendered
    whole instead.
    """

    def __init__(self, site: Site, storage: UserStorage, container: str, token: str, compute_type: Any, image: Any,
                 command: list[str], bindings: list[Any], python_lib: Path, empty: Path | None = None,
                 log_copies: tuple[bool, bool] = (False, False)):
        self.args = (site, storage, container, compute_type, image, bindings, python_lib)
        self.log_copies = log_copies   # `gear sbatch --array -o/-e`: each task copies its output to its own log
        self.command = list(command)
        self.user = storage.user
        self.template: str | None = None
        number, task, arg = int(STAND_INS[0]), int(STAND_INS[1]), STAND_INS[2]
        given = " ".join([container, token, storage.user, str(storage.root), *command, *map(str, bindings)])
        if any(str(mark) in given for mark in (number, task, arg)):
            return
        self.number, self.task, self.arg = str(number), str(task), arg
        exec_dir = storage.execution_dir(container, number)
        self.template = lifecycle.job_script(site, exec_dir, container, number, f"{token}.{task}", compute_type, image,
                                             [*command, arg], storage.user, bindings, python_lib=python_lib,
                                             log_copies=log_copies)
        if self.template.count(arg) != 1:
            self.template = None
        elif empty is not None:
            # Every trial mounts the first trial's empty directory on its unbound input slots (it is
            # empty and read-only): one directory less to make per trial.
            own = str(exec_dir / "empty")
            if own in self.template and not any(c in str(empty) for c in "'\"\\ ,"):
                self.template = self.template.replace(own, str(empty))
            else:
                self.template = None

    def uses_template(self, command: list[str]) -> bool:
        """The trial's script is the template's (so it needs no directory `empty` of its own)."""
        return self.template is not None and command[:len(self.command)] == self.command

    def arguments(self, command: list[str]) -> str:
        """What replaces the argument stand-in: the trial's own arguments, shell-quoted."""
        from ..slurm.render import shell_quote

        return " ".join(shell_quote(a) for a in command[len(self.command):])

    def line(self, task: int, number: int, command: list[str], params: dict[str, Any]) -> str | None:
        """The trial's line of the sweep's `trials` file, or None when its job script cannot be the
        template's and it must be made whole at submission.

        Tab-separated: task id, number, gear_params.json's text for bash's `printf %b` (backslashes
        doubled, line breaks as \\n), the arguments shell-quoted. No field holds a tab or a line
        break of its own: values with control characters are refused before (names.check_text),
        and JSON writes them escaped.
        """
        if self.template is None or not self.uses_template(command):
            return None
        arguments = self.arguments(command)
        if "\n" in arguments or "\t" in arguments:
            return None
        params_text = (json.dumps(params, indent=2) + "\n").replace("\\", "\\\\").replace("\n", "\\n")
        return f"{task}\t{number}\t{params_text}\t{arguments}\n"

    def script(self, exec_dir: Path, number: int, token: str, command: list[str]) -> str:
        """The trial's whole job script: what its task writes from the template, or a render of its own."""
        site, storage, container, compute_type, image, bindings, python_lib = self.args
        if self.template is None or not self.uses_template(command):
            return lifecycle.job_script(site, exec_dir, container, number, token, compute_type, image, command,
                                        self.user, bindings, python_lib=python_lib, log_copies=self.log_copies)
        task = token.rpartition(".")[2]
        # The arguments last, so that a value that happens to hold a stand-in is left as it is.
        text = self.template.replace(self.number, str(number)).replace(self.task, task)
        return text.replace(self.arg, self.arguments(command))


def array_script(task_options: str, container: str, first: int, count: int, token: str, sweep_dir: Path,
                 parallel: int | None, array: str | None = None, task_dirs: Path | None = None,
                 task_script: bool = False, mail_options: Sequence[tuple[str, str]] = ()) -> str:
    """The array's batch script: the #SBATCH lines of the trials' script (all tasks share type and
    site options), with the array's name, directory, log pattern and comment. Task I runs the job
    script in `task_dirs`/I (the container's directory, when task ids are the numbers), else in
    sweep/tasks/I (a link to its execution's directory).

    With `task_script`, a task whose job.sh does not exist yet writes it first: sweep/task.sh
    with its number, task id and arguments from its line of sweep/trials put in place of the
    stand-ins, as TaskScripts.script does (bash's ${text//stand-in/"value"}: a quoted value is
    taken as it is, `&` included). It is written beside and renamed, so a task killed while
    writing leaves no half script for its requeued run.

    `mail_options`: the owner's --mail-type/--mail-user (notify.for_job). Without ARRAY_TASKS
    Slurm mails the array as a whole: BEGIN once, when its first task starts; END or FAIL once,
    when its last task ended (seen on Slurm 24.11).
    """
    from ..slurm.render import sbatch_value, shell_quote

    own = {"job-name", "chdir", "output", "comment", "array", "mail-type", "mail-user"}
    lines = ["#!/bin/bash",
             f"# gear-hpc sweep {container}/{first}-{first + count - 1}: one Slurm job array; generated by gear, "
             "do not edit."]
    for line in task_options.splitlines():
        option = re.match(r"#SBATCH --([a-z-]+)=", line)
        if option and option.group(1) not in own:
            lines.append(line)
    task_dirs = task_dirs or sweep_dir / "tasks"
    options = [("job-name", f"gear-{container}-{first}-{first + count - 1}"), ("chdir", sweep_dir),
               # %a: the task's id, so each task's log is its own execution's output.log.
               ("output", task_dirs / "%a" / "output.log"),
               ("comment", f"gear:{container}/{first}-{first + count - 1}:{token}"),
               ("array", array or f"0-{count - 1}" + (f"%{parallel}" if parallel else "")), *mail_options]
    lines += [f"#SBATCH --{key}={sbatch_value(value)}" for key, value in options]
    lines += ["set -u",
              "task=${SLURM_ARRAY_TASK_ID:?gear: not run as a task of a job array}",
              f"script={shell_quote(str(task_dirs))}/\"$task\"/job.sh"]
    if task_script:
        sweep = shell_quote(str(sweep_dir))
        lines += ['if [ ! -e "$script" ]; then',
                  "  umask 077",
                  f'  dir={shell_quote(str(task_dirs))}/"$task"',
                  "  found=",
                  "  while IFS=$'\\t' read -r id number params arguments; do",
                  '    [ "$id" = "$task" ] && found=1 && break',
                  f"  done < {sweep}/{TRIALS_FILE}",
                  "  [ -n \"$found\" ] || { echo \"gear: task $task has no line in the sweep's list of trials\" >&2; exit 1; }",
                  # The first trial's code, shared (a relative link, so it holds wherever the storage is mounted).
                  f'  [ -e "$dir/code" ] || [ -L "$dir/code" ] || ln -s {shell_quote(f"../{first}/code")} "$dir/code" '
                  "|| exit 1",
                  "  printf '%b' \"$params\" > \"$dir/gear_params.json.part\" "
                  '&& mv -f "$dir/gear_params.json.part" "$dir/gear_params.json" || exit 1',
                  f"  text=$(< {sweep}/{TASK_SCRIPT})",
                  f'  text=${{text//{STAND_INS[0]}/"$number"}}',
                  f'  text=${{text//{STAND_INS[1]}/"$task"}}',
                  f'  text=${{text//{STAND_INS[2]}/"$arguments"}}',
                  "  printf '%s\\n' \"$text\" > \"$script.part\" && mv -f \"$script.part\" \"$script\" || exit 1",
                  "fi"]
    # exec: the task's script becomes the batch shell, so Slurm's signals (stop, time-limit warning) reach its traps.
    lines += ['exec /bin/bash "$script"', ""]
    return "\n".join(lines)


def _discard(ledger: Ledger, storage: UserStorage, container: str, exec_dirs: list[Path]) -> None:
    """Undo a sweep Slurm does not have: its rows (one transaction), its mail proof and its directories."""
    numbers = [int(d.name) for d in exec_dirs]
    try:
        notify.forget_sweep(storage, container, numbers[0], numbers[-1])
    except OSError:
        pass
    try:
        with ledger.transaction() as conn:
            conn.executemany("DELETE FROM executions WHERE container = ? AND number = ?",
                             [(container, n) for n in numbers])
            if not conn.execute("SELECT COUNT(*) FROM executions WHERE container = ?", (container,)).fetchone()[0]:
                conn.execute("DELETE FROM containers WHERE name = ?", (container,))
    except Exception:
        pass   # rows left `submitting` are removed, with their directories, by a refresh once expired
    for exec_dir in exec_dirs:
        if exec_dir.exists():
            remove_tree(exec_dir)
    try:
        exec_dirs[0].parent.rmdir()   # only if now empty
    except OSError:
        pass


def _find_array(token: str) -> str | None:
    try:
        jobs = slurm.query_jobs()
    except SlurmError:
        return None
    for job in jobs.values():
        if job.comment.endswith(f":{token}"):
            return job.job_id.partition("_")[0]
    return None


@dataclass
class SweepStop:
    stopped: list[str]            # executions that were open and were asked to stop
    still_open: list[str]         # of those, still open when the wait ended
    arrays: list[str]             # the Slurm job arrays cancelled


def stop(ledger: Ledger, container: str, numbers: Collection[int], wait_seconds: float = 120.0, poll: float = 1.0) -> SweepStop:
    """Stop every open trial of a sweep: one scancel per job array (its running tasks get TERM and save,
    as `gear stop` does for one execution; its pending tasks never start), then wait for their records."""
    import time

    from .reconcile import refresh
    from .stop import STOP_MARKER

    refresh(ledger)
    numbers = set(numbers)
    trials = [e for e in ledger.executions(container) if e.number in numbers and e.is_open]
    if any(not e.slurm_job_id for e in trials):
        raise GearError("part of the sweep is still being submitted; try again in a moment")
    for execution in trials:
        try:   # the job reads it: its final record says gear stop, not scancel, stopped it
            (Path(execution.workdir).parent / STOP_MARKER).write_text(f"gear stop {utc_now()}\n")
        except OSError:
            pass
    arrays = sorted({(e.slurm_job_id or "").partition("_")[0] for e in trials})
    for array in arrays:
        slurm.cancel(array)
    deadline = time.monotonic() + wait_seconds
    wanted = {e.number for e in trials}
    still_open = sorted(wanted)
    while still_open and time.monotonic() < deadline:
        time.sleep(poll)
        refresh(ledger)
        still_open = [e.number for e in ledger.executions(container) if e.number in wanted and e.is_open]
    return SweepStop([e.id for e in trials], [f"{container}/{n}" for n in still_open], arrays)
