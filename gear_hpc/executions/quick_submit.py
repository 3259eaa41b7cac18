"""The lean submission: an ordinary execution submitted without the submit machinery's imports.

Workflow tools call `gear sbatch` thousands of times, and `gear run` of a
small code directory is what users type most; issue 13 asks both to cost at
most 10× a bare sbatch. The full path (lifecycle.submit) imports the site
model's dataclasses, pathlib, re, json, subprocess, the bindings, the
notifications…: several times what sbatch itself costs (docs/benchmarks.md,
the cost of one submission). This module does the same work for the common
case with the standard library's cheapest modules (os, stat, marshal,
sqlite3) and gear's lean leaves (base/facts.py, base/names.py,
base/runner.py, slurm/skeleton.py):

- what it needs of the site (compute types, images, the storage root…) and
  the mail options a user's notification settings give come from a record
  the full path writes after each submission (`remember`), trusted only
  while the site files read exactly as when the site was last validated
  (base/facts.py `valid_storage_root`, the same test the fast path of
  `gear status` makes) and the settings files read exactly as recorded;
- the job script is filled from the kept skeleton of its shape
  (slurm/skeleton.py `kept`).

It handles only what it knows it does exactly as the full path: a request
with no data bindings, no parameters, no parent, on shared storage, its
code a small flat directory (named, or the current one within the site's
limit) or none, a compute type and an image the record
names, a skeleton kept. For anything else, and whenever a check would fail,
`submit` raises Decline BEFORE creating anything, and the caller takes the
full path, which does it all and says what is wrong, so behaviour never
differs; only the time does. Once the execution's number is taken, a
failure is undone as the full path undoes it (lifecycle._discard) and
raised as the full path raises it. tests/cluster/test_quick_submit.py runs
both paths on the same inputs and compares what they print and write.
"""

from __future__ import annotations

import marshal
import os
import stat

from ..base import errors, facts
from ..base.errors import GearError, SlurmError

# Annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

    from ..site.model import Site
    from .request import RunRequest

RECORD_FORMAT = "gear-submit-2"
TEMPLATE = "job.sh.j2"
KILL_AFTER_SECONDS = 20          # lifecycle.KILL_AFTER_SECONDS (test_quick_submit checks they agree)
SUBMIT_TIMEOUT = 60.0            # slurm.jobs.SUBMIT_TIMEOUT
LIB, IN_CONTAINER = "lib", "/opt/gear/python"                   # executions/job_lib.py
PYTHONPATH = IN_CONTAINER + "${PYTHONPATH:+:$PYTHONPATH}"       # job_lib.PYTHONPATH: ours, then the image's
LIB_MODULES = ("gear_metrics.py", "openbayestool.py")
HOME, OUTPUT = "/hyperai/home", "/output"                        # slurm/apptainer.py
INPUT_SLOTS = tuple(f"/hyperai/input/input{k}" for k in range(5))
INPUT_ALIASES = tuple(f"/input{k}" for k in range(5))
SMALL_FILES, SMALL_BYTES, IGNORE_FILE = 32, 4 << 20, ".gearignore"   # data/staging.py
SETTINGS_FILE, OLD_SETTINGS_FILE = "settings.json", "notify.json"    # notify/settings.py
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Decline(Exception):
    """Not one this path does exactly as the full path: nothing was created; take the full path."""


class Submitted:
    """What the caller prints: the execution's id, its Slurm job, compute type and image."""

    def __init__(self, container: str, number: int, job_id: str, compute_type: str, image: str) -> None:
        self.container, self.number, self.slurm_job_id = container, number, job_id
        self.compute_type, self.image = compute_type, image

    @property
    def id(self) -> str:
        return f"{self.container}/{self.number}"


# ---- The record: what the full path knew of the site and of the user's mail settings.

def _record_path() -> str | None:
    site_cache = facts.cache_dir()
    return os.path.join(os.path.dirname(site_cache), "submit", "record.marshal") if site_cache else None


def _read_record() -> Any:
    path = _record_path()
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            record = marshal.loads(handle.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if type(record) is not tuple or len(record) != 5 or record[0] != RECORD_FORMAT:
        return None
    return record


def _settings_texts(root: str) -> tuple[str | None, str | None]:
    """The texts notify.load_settings reads: settings.json, else the old notify.json (None: absent)."""
    new = _read_text(os.path.join(root, facts.NOTIFY, SETTINGS_FILE))
    return (new, None) if new is not None else (None, _read_text(os.path.join(root, OLD_SETTINGS_FILE)))


def _read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def remember(site: Site, user: str) -> None:
    """After the full path submitted: record what this path needs, if it changed (never fails)."""
    try:
        memo = facts.read_memo()
        path = _record_path()
        if memo is None or path is None or facts.valid_storage_root() != str(site.storage_root):
            return   # the site record is not the one this site was loaded from: nothing to key on
        from ..notify import settings as notify

        root = os.path.join(str(site.storage_root), facts.USERS, user)
        before = _settings_texts(root)
        mail = notify.for_job(site, user)
        if _settings_texts(root) != before:
            return
        workdir = site.workdir
        site_facts = {
            "storage_root": str(site.storage_root), "apptainer": site.apptainer,
            "default_compute_type": site.default_compute_type, "default_image": site.default_image,
            "time_limit_warning": site.time_limit_warning, "mail_enabled": site.mail.enabled,
            "workdir": (workdir.mode, workdir.scratch_dir, workdir.save_interval),
            "compute_types": {name: (t.name, t.partition, t.cpus, t.memory, t.time_limit, t.gres, t.qos, t.account,
                                     t.constraint, t.gpus) for name, t in site.compute_types.items()},
            "images": {name: (image.name, image.path) for name, image in site.images.items()},
            "code_limit": (site.code_limit.files, site.code_limit.bytes),
        }
        mail_entry = (user, before, tuple(mail.sbatch_options), mail.report_extra)
        record = (RECORD_FORMAT, memo, site_facts, mail_entry, _code_key())
        if _read_record() == record:
            return
        marshal.dumps(record)   # ValueError for anything marshal cannot hold: no record
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(marshal.dumps(record))
        os.replace(temporary, path)
    except Exception:
        pass


def _code_key() -> tuple[int, ...]:
    """The mtime and size of the modules whose rules the record's mail entry and this path follow."""
    key: list[int] = []
    for name in ("notify/settings.py", "executions/lifecycle.py", "executions/quick_submit.py",
                 "executions/job_lib.py", "slurm/apptainer.py", "storage/disk.py", "ledger/db.py"):
        info = os.stat(os.path.join(_PACKAGE, name))
        key += [info.st_mtime_ns, info.st_size]
    return tuple(key)


def _facts(user: str, root_of: Any) -> tuple[dict[str, Any], tuple[tuple[str, str], ...], str | None]:
    """The site facts and this user's mail options, if the record holds them for the files as they are now."""
    record = _read_record()
    if record is None:
        raise Decline("no record")
    _format, memo, site_facts, mail_entry, code = record
    storage_root = facts.valid_storage_root()
    if storage_root is None or storage_root != site_facts["storage_root"] or facts.read_memo() != memo:
        raise Decline("the site files changed")
    try:
        if code != _code_key():
            raise Decline("gear changed")
    except OSError:
        raise Decline("gear's sources unreadable") from None
    recorded_user, texts, mail_options, report_extra = mail_entry
    try:
        if recorded_user != user or _settings_texts(root_of(storage_root)) != texts:
            raise Decline("the notification settings changed")
    except (OSError, ValueError):
        raise Decline("notification settings unreadable") from None
    return site_facts, mail_options, report_extra


# ---- The submission.

def submit(request: RunRequest, user: str | None = None, empty_code: bool = False) -> Submitted:
    """Submit `request` as lifecycle.submit would, or raise Decline having created nothing.

    `empty_code`: upload no code, only the generated files (`gear sbatch`, whose full path snapshots a
    new empty directory); request.code is then not read."""
    from ..base.names import check_name, check_text

    user = user or facts.current_user()
    code = os.fspath(request.code)
    if (request.mode != "script" or request.workspace is not None or request.parent is not None or request.home_layer
            or request.params or request.bindings or not request.code_uploaded
            or not request.command or request.container is None):
        raise Decline("not an ordinary request")
    try:   # a value the full path refuses: it says so, in its words
        for arg in request.command:
            check_text(arg, "the command")
        if request.message is not None:
            check_text(request.message, "the message")
        container = check_name(request.container, "container name")
    except GearError:
        raise Decline("a value the full path refuses") from None
    slurm_bin = os.environ.get("GEAR_SLURM_BIN")
    if slurm_bin and os.path.normpath(slurm_bin) != slurm_bin:
        raise Decline("GEAR_SLURM_BIN as pathlib would write it")   # the command's name in its errors
    site_facts, mail_options, report_extra = _facts(user, lambda root: os.path.join(root, facts.USERS, user))
    mode, _scratch_dir, save_interval = site_facts["workdir"]
    compute_type = site_facts["compute_types"].get(request.compute_type or site_facts["default_compute_type"])
    image = site_facts["images"].get(request.image or site_facts["default_image"])
    if mode != "shared" or compute_type is None or image is None or not os.path.exists(image[1]):
        raise Decline("not a site fact this path knows")
    files = [] if empty_code else _small_code(code)
    if request.code_unnamed:   # lifecycle.check_code_size: what rsync would list of a small flat directory
        limit_files, limit_bytes = site_facts["code_limit"]
        if len(files) > limit_files or sum(info.st_size for _, info in files) > limit_bytes:
            raise Decline("over the site's limit for code not named")
    paths = facts.user_paths(site_facts["storage_root"], user)
    ledger_path = paths["ledger"]
    if not os.path.isfile(ledger_path) or os.path.getsize(ledger_path) == 0:
        raise Decline("no ledger yet")
    values = dict(site=site_facts, compute_type=compute_type, image=image, user=user, mail=mail_options,
                  report_extra=report_extra, save_interval=save_interval, command=request.command,
                  log_copies=request.log_copies())
    from ..slurm import skeleton

    # The skeleton of this script's shape (the number and token are only text in it), filled once to be sure.
    probe = _context(container=container, number=1, token="0" * 16,
                     exec_dir=os.path.join(paths["containers"], container, "1"), **values)
    kept = skeleton.kept_skeleton(TEMPLATE, probe)
    try:
        if kept is None or skeleton.fill_kept(kept, probe) is None:
            raise Decline("no skeleton kept for this shape")
    except GearError:   # a value no #SBATCH line takes: the full path says so
        raise Decline("a value the full path refuses") from None
    _ensure(paths)
    token = os.urandom(8).hex()   # as secrets.token_hex(8) makes it
    conn = _open_ledger(ledger_path)
    try:
        number, exec_dir = _allocate(conn, paths, container, request, compute_type[0], image[0], token)
        try:
            _prepare(exec_dir, code, files, request, site_facts, paths, container, number, token, values, empty_code,
                     kept)
            job_id = _sbatch(os.path.join(exec_dir, "job.sh"), request.sbatch_options, token)
        except BaseException:
            conn.close()   # lifecycle._discard opens the ledger as the full path does
            _discard(ledger_path, exec_dir, container, number)
            raise
        conn.execute("UPDATE executions SET status = ?, slurm_job_id = ?, submitted_at = ? "
                     "WHERE container = ? AND number = ?", ("queued", job_id, _utc_now(), container, number))
    finally:
        conn.close()   # closing twice is allowed
    return Submitted(container, number, job_id, compute_type[0], image[0])


def _small_code(code: str) -> list[tuple[str, os.stat_result]]:
    """The files of a small flat code directory, as data/staging.py copies it without rsync; else Decline."""
    source = os.path.abspath(code)   # staging.snapshot_code's operand()
    found: list[tuple[str, os.stat_result]] = []
    try:
        if not os.path.isdir(source):
            raise Decline("the code is not a directory")
        with os.scandir(source) as listing:
            for entry in listing:
                if len(found) >= SMALL_FILES or entry.name == IGNORE_FILE or not entry.is_file(follow_symlinks=False):
                    raise Decline("not a small flat code directory")
                found.append((entry.name, entry.stat(follow_symlinks=False)))
    except OSError:
        raise Decline("the code directory cannot be read here") from None
    if sum(info.st_size for _, info in found) > SMALL_BYTES:
        raise Decline("more code than the small copy takes")
    return found


def _ensure(paths: dict[str, str]) -> None:
    """storage.disk.UserStorage.ensure, where it would pass; Decline (nothing made) where it would fail."""
    try:
        users = os.stat(paths["users"])
        if not stat.S_ISDIR(users.st_mode) or users.st_mode & 0o002:
            raise Decline("storage root")
        info = os.lstat(paths["root"])
    except OSError:
        raise Decline("no user directory yet") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise Decline("user directory")
    os.makedirs(paths["containers"], mode=0o700, exist_ok=True)
    os.makedirs(paths["datasets"], mode=0o700, exist_ok=True)


def _open_ledger(path: str) -> sqlite3.Connection:
    """ledger.db.Ledger's connection, for a ledger at the current schema (else Decline)."""
    import sqlite3

    from ..ledger.rows import BUSY_TIMEOUT_MS, SCHEMA_VERSION

    errors.ledger_in_use = path   # named by errors.describe (SQLite's errors do not say)
    uri = "file:" + path.replace("%", "%25").replace("?", "%3f").replace("#", "%23") + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if os.path.getsize(path) == 0 or conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            raise Decline("ledger schema")
    except BaseException:
        conn.close()
        raise
    return conn


def _utc_now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _json_strings(words: list[str]) -> str:
    """json.dumps(words) for a list of strings, without importing json (which imports re)."""
    from _json import encode_basestring_ascii

    return "[" + ", ".join(encode_basestring_ascii(word) for word in words) + "]"


def _allocate(conn: sqlite3.Connection, paths: dict[str, str], container: str, request: RunRequest,
              compute_type: str, image: str, token: str) -> tuple[int, str]:
    """Ledger.allocate_execution as lifecycle.submit calls it: the next number, its directory, its row."""
    container_dir = os.path.join(paths["containers"], container)
    made: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR IGNORE INTO containers (name, created_at) VALUES (?, ?)", (container, _utc_now()))
        number = (conn.execute("SELECT MAX(number) FROM executions WHERE container = ?",
                               (container,)).fetchone()[0] or 0) + 1
        if not os.path.isdir(container_dir):
            os.makedirs(container_dir, mode=0o700)
            made.append(container_dir)
        while True:
            try:
                os.mkdir(os.path.join(container_dir, str(number)), 0o700)
                break
            except FileExistsError:
                number += 1
        exec_dir = os.path.join(container_dir, str(number))
        made.append(exec_dir)
        row = {"mode": "script", "status": "submitting", "compute_type": compute_type, "image": image,
               "command": _json_strings(request.command), "params": "{}", "bindings": "[]",
               "message": request.message, "token": token, "parent": None, "container": container,
               "number": number, "workdir": os.path.join(exec_dir, "home"), "created_at": _utc_now()}
        conn.execute(f"INSERT INTO executions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                     list(row.values()))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except Exception:
                pass
        from pathlib import Path

        from ..storage.disk import remove_tree

        for path in reversed(made):
            try:
                remove_tree(Path(path))
            except OSError:
                pass
        raise
    return number, exec_dir


def _copy_small(source: str, target: str, files: list[tuple[str, os.stat_result]]) -> None:
    """data/staging.py's small copy: bytes, modes and times as rsync -a copies them; the directory's too."""
    for name, info in files:
        copy = os.path.join(target, name)
        with open(os.path.join(source, name), "rb") as reading, open(copy, "xb") as writing:
            writing.write(reading.read())
        os.chmod(copy, stat.S_IMODE(info.st_mode))
        os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
    info = os.stat(source)
    os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _prepare(exec_dir: str, code: str, files: list[tuple[str, os.stat_result]], request: RunRequest,
             site_facts: dict[str, Any], paths: dict[str, str], container: str, number: int, token: str,
             values: dict[str, Any], empty_code: bool, kept: tuple[str, list[str]]) -> None:
    """lifecycle._prepare for this request: the code snapshot, parameters, empty dir, lib, script, mail proof.
    An empty code directory has mode 0700 (as tempfile.mkdtemp makes the one the full path copies)."""
    target = os.path.join(exec_dir, "code")
    os.mkdir(target, 0o700)
    if empty_code:
        os.chmod(target, 0o700)   # the copied directory's mode, which drops a setgid bit inherited from above
    else:
        _copy_small(os.path.abspath(code), target, files)
    for relative, text in request.generated_files.items():
        with open(os.path.join(target, relative), "w") as handle:
            handle.write(text)
    with open(os.path.join(exec_dir, "gear_params.json"), "w") as handle:
        handle.write("{}\n")   # json.dumps({}, indent=2) + "\n"
    os.mkdir(os.path.join(exec_dir, "empty"), 0o500)
    lib = os.path.join(exec_dir, LIB)
    os.mkdir(lib, 0o700)
    for name in LIB_MODULES:   # job_lib.install_lib
        with open(os.path.join(_PACKAGE, "job_python", name), "rb") as reading, \
                open(os.path.join(lib, name), "wb") as writing:
            writing.write(reading.read())
    from ..slurm.skeleton import fill_kept

    context = _context(container=container, number=number, token=token, exec_dir=exec_dir, **values)
    script = fill_kept(kept, context)
    if script is None:   # a shape the probe did not foresee: Jinja renders it (and keeps its skeleton)
        from ..slurm.render import render

        script = render(TEMPLATE, **context)
    with open(os.path.join(exec_dir, "job.sh"), "w") as handle:
        handle.write(script)
    if site_facts["mail_enabled"]:
        _register_execution(paths, container, number, token)


def _context(container: str, number: int, token: str, exec_dir: str, site: dict[str, Any],
             compute_type: tuple[Any, ...], image: tuple[str, str], user: str,
             mail: tuple[tuple[str, str], ...], report_extra: str | None, save_interval: int,
             command: list[str], log_copies: tuple[bool, bool]) -> dict[str, Any]:
    """lifecycle.job_script's values for job.sh.j2, for an execution with no bindings, parent or workspace."""
    name, partition, cpus, memory, time_limit, gres, qos, account, constraint, gpus = compute_type
    home = os.path.join(exec_dir, "home")
    options: list[tuple[str, Any]] = [
        ("job-name", f"gear-{container}-{number}"), ("partition", partition), ("nodes", 1), ("ntasks", 1),
        ("cpus-per-task", cpus), ("mem", memory), ("time", time_limit)]
    if gres:
        options.append(("gres", gres))
    for key, value in (("qos", qos), ("account", account), ("constraint", constraint)):
        if value:
            options.append((key, value))
    options += [
        ("chdir", exec_dir), ("output", os.path.join(exec_dir, "output.log")), ("open-mode", "append"),
        ("comment", f"gear:{container}/{number}:{token}"), ("signal", f"B:USR1@{site['time_limit_warning']}")]
    options += [(key, value) for key, value in mail]
    lib = os.path.join(exec_dir, LIB)
    environment = [("GEAR_CONTAINER", container), ("GEAR_EXECUTION", f"{container}/{number}"),
                   ("GEAR_EXECUTION_NUMBER", str(number)), ("GEAR_USER", user),
                   ("GEAR_COMPUTE_TYPE", name), ("GEAR_IMAGE", image[0]), ("PYTHONPATH", PYTHONPATH)]
    empty = os.path.join(exec_dir, "empty")
    inputs = [path for pair in zip(INPUT_SLOTS, INPUT_ALIASES, strict=True) for path in pair]   # apptainer.exec_argv's order
    mounts = [(home, HOME, False), (home, OUTPUT, False), *((empty, path, True) for path in inputs),
              (lib, IN_CONTAINER, True)]
    argv = [site["apptainer"], "exec", "--containall", "--pwd", HOME]
    if gpus > 0:
        argv.append("--nv")
    for source, target, read_only in mounts:
        argv += ["--mount", _mount_option(source, target, read_only)]
    argv.append(image[1])
    argv.extend(command)
    return dict(workspace=None, execution_id=f"{container}/{number}", sbatch_options=options, exec_dir=exec_dir,
                home=home, work=home, environment=environment, apptainer_argv=argv, kill_after=KILL_AFTER_SECONDS,
                report_extra=report_extra, scratch=False, save_interval=save_interval, home_source=None,
                home_source_id=None, home_layer=None, home_layer_id=None, copy_stdout=log_copies[0],
                copy_stderr=log_copies[1])


def _mount_option(source: str, target: str, read_only: bool) -> str:
    """apptainer.mount_option: its CSV line, for fields csv would not quote (else Decline)."""
    fields = ["type=bind", f"src={source}", f"dst={target}"] + (["ro"] if read_only else [])
    if any(char in field for field in fields for char in ',"\r\n'):
        raise Decline("a path csv would quote")
    return ",".join(fields)


def _register_execution(paths: dict[str, str], container: str, number: int, token: str) -> None:
    """notify.register_execution: the proof gear-mailprog asks for, written whole, readable as notify/ is."""
    root = paths["root"]
    notify_dir = os.path.join(root, facts.NOTIFY)
    mode = 0o750 if os.stat(root).st_mode & stat.S_ISGID else 0o700   # storage.disk.ensure_notify_dir
    previous = os.umask(0o027)
    try:
        os.mkdir(notify_dir, mode)
    except FileExistsError:
        pass
    finally:
        os.umask(previous)
    info = os.lstat(notify_dir)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise GearError(f"{notify_dir} is not a directory owned by you; refusing to use it")
    if stat.S_IMODE(info.st_mode) & 0o777 != mode:
        os.chmod(notify_dir, mode | (info.st_mode & stat.S_ISGID))
    notify_mode = stat.S_IMODE(os.stat(notify_dir).st_mode)
    directory = os.path.join(notify_dir, "executions", container)
    previous = os.umask(0o027)
    try:
        for each in (os.path.dirname(directory), directory):
            try:
                os.mkdir(each, notify_mode & 0o777)
            except FileExistsError:
                if not os.path.isdir(each):   # Path.mkdir(exist_ok=True) lets only a directory be
                    raise
    finally:
        os.umask(previous)
    path = os.path.join(directory, str(number))
    while True:   # tempfile.mkstemp's way: a new name, made exclusively
        temporary = os.path.join(directory, f".gear.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            break
        except FileExistsError:
            continue
    try:
        os.fchmod(fd, 0o640 if notify_mode & 0o050 == 0o050 else 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _sbatch(script: str, options: list[str], token: str) -> str:
    """slurm.jobs.submit: `sbatch --parsable` with the user's options; its job id (digits)."""
    from ..base.runner import CommandFailed, run
    from ..slurm.queue import slurm_command, submit_env

    try:
        result = run([slurm_command("sbatch"), "--parsable", *options, script], timeout=SUBMIT_TIMEOUT,
                     env=submit_env())
    except CommandFailed as exc:
        if exc.timed_out:
            # The job may exist: the full path's way of finding it by its comment token.
            from ..slurm import jobs
            from .lifecycle import _find_job_by_token

            found = _find_job_by_token(token)
            if found is None:
                raise jobs.SubmitTimeout(f"sbatch did not answer within {SUBMIT_TIMEOUT:.0f} s") from None
            return found
        reason = (exc.stderr or exc.stdout).strip() or f"exit code {exc.returncode}"
        raise SlurmError(f"sbatch refused the job: {reason}") from None
    job_id = result.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed {result.stdout.strip()!r} instead of a job id: {result.stderr.strip()}")
    return job_id


def _discard(ledger_path: str, exec_dir: str, container: str, number: int) -> None:
    """lifecycle._discard: no row, no directory, no mail proof."""
    from pathlib import Path

    from ..ledger.db import Ledger
    from .lifecycle import _discard as discard

    with Ledger(Path(ledger_path)) as ledger:
        discard(ledger, Path(exec_dir), container, number)
