"""Fault stress and continuation figures of issue 4, measured inside the local cluster as an ordinary user.

1. Faults. Each fault is repeated N times (`--repeat`, default 20) on an
   execution whose program writes a known set of files (200 files of 1-4 KiB
   with known SHA-256, each written and fsynced) BEFORE a marker file, then
   sleeps. Once the marker exists the fault is injected; the script waits
   until gear reports the execution closed and counts: files lost (expected
   files missing or with a wrong checksum in the saved working directory;
   goal 0), the final statuses (a histogram), statuses outside the expected
   set, any execution reported `completed` wrongly, and executions whose
   program still runs after Slurm ended the job and gear closed it (found in
   /proc by SLURM_JOB_ID: the local cluster is one machine; then killed).
   The faults:

   - `stop`      `gear stop C/N` (graceful: waits for the final record)
   - `stop-now`  `gear stop C/N --now`
   - `scancel`   plain `scancel JOB` (TERM, KILL after KillWait)
   - `timeout`   a 1-minute compute type with time_limit_warning 30 (Slurm
                 sends USR1 to the batch shell; nothing injected by hand).
                 Slurm looks for due warnings only every 30-60 s, so the
                 warning may come right after the job starts, before the
                 program wrote anything: such a run is correct if it ends
                 `timeout` and saved, and is shown apart (no files to check)
   - `sigkill`   `scancel --signal=KILL --batch JOB`: SIGKILL of the batch
                 shell: nothing of gear runs after, no final record (Slurm
                 state FAILED, RaisedSignal:9). Whether the program dies too
                 is up to Slurm's process tracking (see "program left")
   - `sigkill-full` `scancel --signal=KILL --full JOB`, as issue 4 names it.
                 On Slurm 24.11 slurmctld turns a SIGKILL of the whole job
                 into a cancel (state CANCELLED, the batch shell gets TERM
                 and its trap saves, KILL after KillWait): measured as such,
                 and `sigkill` above is the real SIGKILL
   - `requeue`   `scontrol requeue JOB`. Slurm holds a requeued job
                 (Reason=BeginTime) for about 2 minutes and only an admin may
                 release it early; this script runs as an ordinary user and
                 waits the hold out, so requeue is counted separately, with
                 fewer repetitions (`--requeue-repeat`, default ceil(N/4)),
                 in its own worker beside the others. Expected: `completed`
                 (the second run ends at once), the files of the first run
                 present both in the working directory and in `runs/1`.

   The executions run on a compute type of this script's own site
   configuration (`stress-1`: 1 CPU, 512 MiB; `stress-short`: the same with
   a 1-minute limit), `--parallel` (default 4) at a time, plus the requeue
   worker: at most 5 of the node's 8 CPU slots, so that others can still use
   the cluster. One `gear status --json` every 2 s observes all of them (one
   squeue per call, whatever the number of executions).

2. Continuation. A parent execution writes 20,000 files of 2 KiB
   (`--files`) into its working directory, inside the job. Then, per
   repetition (`--continue-repeat`, default 5; 1 with --quick):
   - `gear continue PARENT -- python3 modify.py 10` (rewrites 100 bytes of 10
     files in place): wall time from submit to the job's final record, and to
     gear reporting `completed`; the job's own phases from its status
     records (syncing = overlay mount + code copy, saving = the save with
     hard links to the parent + clean-up + sync), timed to the millisecond
     by watching the batch script's temporary record files with inotify;
   - the same with `--no-home` (an empty working directory: what any
     execution costs, so the difference is what carrying the parent costs);
   - the anchor, in the same run: `rsync -a PARENT_HOME/ fresh_dir/`, its
     wall time and its bytes;
   - extra bytes of the child's saved working directory beyond what it
     shares with the parent: the apparent size of files whose inode is not
     one of the parent's, and `du -s -B1 PARENT CHILD` (du counts an inode
     once per invocation, so its second line is the child's own blocks,
     directories included).
   The parent's working directory is hashed before and after: it must not
   change.

Run it with `bash benchmarks/run stress.py [--quick | --repeat N]` (as root;
it uses gear devcluster). It needs nothing beyond the standard library and
the cluster's gear, rsync and du. Everything lives under a private storage
root in /tmp (GEAR_STORAGE_ROOT) that is removed at the end, unless a defect
was found or `--keep` is given.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import hashlib
import json
import math
import os
import pwd
import re
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from jobwatch import Watcher, remove_tree, submitted

CLOSED = {"completed", "failed", "terminated", "timeout", "lost"}
FILES = 200            # files the fault program writes before its marker
SLEEP = 900            # seconds the fault program sleeps after its marker
MONITOR_INTERVAL = 2.0

FAULTS = ["stop", "stop-now", "scancel", "timeout", "sigkill", "sigkill-full", "requeue"]
FAULT_LABELS = {
    "stop": "gear stop (graceful)",
    "stop-now": "gear stop --now",
    "scancel": "scancel (plain)",
    "timeout": "time limit (USR1 @30s)",
    "sigkill": "scancel --signal=KILL --batch",
    "sigkill-full": "scancel --signal=KILL --full",
    "requeue": "scontrol requeue",
}
EXPECTED = {
    "stop": {"terminated"},
    "stop-now": {"terminated"},
    "scancel": {"terminated"},
    "timeout": {"timeout"},
    "sigkill": {"failed", "terminated", "lost"},
    "sigkill-full": {"failed", "terminated", "lost"},
    "requeue": {"completed"},
}
# Faults after which the job runs its trap and saves: the record must say saved (no note).
SAVES = {"stop", "stop-now", "scancel", "timeout", "requeue"}

# The content of file i of the fault program: the same code here and in the job.
CONTENT_SRC = (
    "def content(i):\n"
    "    return hashlib.sha256(b'gear-stress %d' % i).digest() * (32 + i % 97)\n"
)
ns: dict = {"hashlib": hashlib}
exec(CONTENT_SRC, ns)
content = ns["content"]

WRITER = ("import hashlib, os, sys, time\n" + CONTENT_SRC + r'''
count, sleep = int(sys.argv[1]), float(sys.argv[2])
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
if restart != "0":
    # A requeued run: it starts from what the earlier run saved, and ends at once.
    open(f"restart-{restart}.txt", "w").write(restart)
    print("run", restart, "starts with the marker:", os.path.exists("marker"), flush=True)
    sys.exit(0)
os.makedirs("data", exist_ok=True)
for i in range(count):
    with open(f"data/f{i:04d}.bin", "wb") as f:
        f.write(content(i))
        f.flush()
        os.fsync(f.fileno())
for directory in ("data", "."):
    fd = os.open(directory, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
with open("marker.tmp", "w") as f:
    f.write(str(count))
    f.flush()
    os.fsync(f.fileno())
os.rename("marker.tmp", "marker")
fd = os.open(".", os.O_RDONLY)
os.fsync(fd)
os.close(fd)
print("marker written", flush=True)
time.sleep(sleep)
print("slept", flush=True)
''')

GEN = r'''
import os, sys
count, size = int(sys.argv[1]), int(sys.argv[2])
for j in range(count):
    directory = f"files/d{j // 1000:02d}"
    if j % 1000 == 0:
        os.makedirs(directory, exist_ok=True)
    with open(f"{directory}/f{j:05d}.bin", "wb") as f:
        f.write(os.urandom(size))
print("wrote", count, "files of", size, "bytes", flush=True)
'''

MODIFY = r'''
import os, sys
count, total = int(sys.argv[1]), int(sys.argv[2])
changed = 0
for i in range(count):
    j = i * 1999 % total
    path = f"files/d{j // 1000:02d}/f{j:05d}.bin"
    if os.path.exists(path):
        with open(path, "r+b") as f:   # in place: 100 bytes at offset 100
            f.seek(100)
            f.write((b"continued %d " % i).ljust(100, b"."))
        changed += 1
print("modified", changed, "files", flush=True)
'''


def modified_paths(count: int, total: int) -> list[str]:
    return [f"files/d{j // 1000:02d}/f{j:05d}.bin" for j in (i * 1999 % total for i in range(count))]


# --- small helpers ---

def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, 124, exc.stdout or "", f"timed out after {timeout} s")



def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} s / {max(values):.1f} s"


# --- the bench ---

class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.root = tmp / "storage"
        (self.root / "users").mkdir(parents=True)
        self.site = self.make_site(tmp / "site")
        self.env = {**os.environ, "GEAR_STORAGE_ROOT": str(self.root), "GEAR_SITE_CONFIG": str(self.site)}
        self.containers = self.root / "users" / self.user / "containers"
        self.jobs: set[str] = set()
        self.jobs_lock = threading.Lock()
        self.records: dict[str, dict] = {}
        self.records_cond = threading.Condition()
        self.monitor_errors = 0
        self.monitor_calls = 0
        self.stopped = False
        self.monitor = threading.Thread(target=self._monitor, daemon=True)

    @staticmethod
    def make_site(site: Path) -> Path:
        """A copy of the cluster's site configuration with two compute types of our own and a
        30-second time-limit warning, owned by this (ordinary) user."""
        source = Path(os.environ.get("GEAR_SITE_CONFIG") or "/etc/gear")
        site.mkdir()
        for name in ("site.yaml", "compute-types.yaml", "images.yaml"):
            shutil.copy(source / name, site / name)
        text = (site / "site.yaml").read_text()
        if re.search(r"(?m)^time_limit_warning:", text):
            text = re.sub(r"(?m)^time_limit_warning:.*$", "time_limit_warning: 30", text)
        else:
            text += "\ntime_limit_warning: 30\n"
        (site / "site.yaml").write_text(text)
        with open(site / "compute-types.yaml", "a") as f:
            f.write("\nstress-1:\n  description: stress benchmark, 1 CPU\n  partition: cpu\n  cpus: 1\n"
                    "  memory: 512M\n  time_limit: \"00:30:00\"\n"
                    "\nstress-short:\n  description: stress benchmark, 1 CPU, 1 minute\n  partition: cpu\n"
                    "  cpus: 1\n  memory: 512M\n  time_limit: \"1\"\n")
        return site

    def gear(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run(["gear", *args], env=self.env, timeout=timeout)

    def submit(self, *args: str) -> tuple[str, str]:
        """`gear run|continue …`: (execution id, Slurm job id) from what it prints."""
        execution, job = submitted(self.gear(*args))
        with self.jobs_lock:
            self.jobs.add(job)
        return execution, job

    def exec_dir(self, execution: str) -> Path:
        container, number = execution.split("/")
        return self.containers / container / number

    # One observer for all executions: `gear status --json` every 2 s.
    def _monitor(self) -> None:
        while not self.stopped:
            started = time.monotonic()
            proc = self.gear("status", "--json", timeout=120)
            self.monitor_calls += 1
            try:
                rows = json.loads(proc.stdout) if proc.returncode == 0 else None
            except ValueError:
                rows = None
            if rows is None:
                self.monitor_errors += 1
                log(f"gear status --json failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
            else:
                now = time.monotonic()
                with self.records_cond:
                    for row in rows:
                        row["_seen"] = now
                        previous = self.records.get(row["id"])
                        if row["status"] in CLOSED and previous and previous["status"] in CLOSED:
                            row["_seen"] = previous["_seen"]  # when it was first seen closed
                        self.records[row["id"]] = row
                    self.records_cond.notify_all()
            time.sleep(max(0.0, MONITOR_INTERVAL - (time.monotonic() - started)))

    def record(self, execution: str) -> dict | None:
        with self.records_cond:
            return self.records.get(execution)

    def wait_closed(self, execution: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        with self.records_cond:
            while True:
                row = self.records.get(execution)
                if row and row["status"] in CLOSED:
                    return row
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.records_cond.wait(min(left, 5))

    def cancel_leftovers(self) -> None:
        """scancel this run's jobs that Slurm still has pending or running (normally none)."""
        with self.jobs_lock:
            ours = set(self.jobs)
        listed = run(["squeue", "--me", "-h", "-t", "PD,R,CG,S", "-o", "%i"]).stdout.split()
        jobs = sorted(ours & set(listed))
        if jobs:
            log(f"cancelling jobs left by this run: {' '.join(jobs)}")
            run(["scancel", *jobs])


# --- faults ---

@dataclass
class Trial:
    fault: str
    index: int
    execution: str = ""
    job: str = ""
    submitted: float = 0.0
    marker: float | None = None
    injected: float | None = None
    closed: float | None = None
    status: str = ""
    exit_code: object = None
    note: str | None = None
    lost: int = 0
    missing: int = 0
    corrupt: int = 0
    injection: str = ""          # what the fault command said
    left_running: list[str] = field(default_factory=list)  # the program (apptainer …) alive after the job ended
    left_timer: list[str] = field(default_factory=list)    # the batch script's kill timer alive after the job ended
    early: bool = False          # time limit: the warning came before the program wrote its files
    problems: list[str] = field(default_factory=list)
    details: str = ""

    @property
    def defect(self) -> bool:
        return bool(self.problems)


EXPECTED_DIGESTS = [hashlib.sha256(content(i)).hexdigest() for i in range(FILES)]


def check_files(home: Path) -> tuple[int, int]:
    """(missing, corrupt) among the expected files of the fault program."""
    missing = corrupt = 0
    for i, digest in enumerate(EXPECTED_DIGESTS):
        path = home / "data" / f"f{i:04d}.bin"
        try:
            data = path.read_bytes()
        except OSError:
            missing += 1
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            corrupt += 1
    return missing, corrupt


def describe(bench: Bench, trial: Trial) -> str:
    """Everything needed to report a defect: directory listing, status.json, log, squeue, gear show."""
    exec_dir = bench.exec_dir(trial.execution) if trial.execution else None
    lines = [f"--- {FAULT_LABELS[trial.fault]} #{trial.index}: {trial.execution} (Slurm job {trial.job})"]
    lines += [f"problem: {p}" for p in trial.problems]
    if trial.injection:
        lines.append(f"fault command said: {trial.injection.strip()}")
    if exec_dir is not None:
        listing = run(["ls", "-la", str(exec_dir)]).stdout
        lines.append(f"{exec_dir}:\n{listing.rstrip()}")
        home = exec_dir / "home"
        if home.is_dir():
            names = sorted(os.listdir(home))
            data = len(os.listdir(home / "data")) if (home / "data").is_dir() else 0
            lines.append(f"home: {names} (data/ holds {data} files)")
        for name in ("status.json", "output.log"):
            try:
                text = (exec_dir / name).read_text(errors="replace")
            except OSError as exc:
                text = f"({exc})"
            lines.append(f"{name}:\n" + "\n".join(text.rstrip().splitlines()[-25:]))
    if trial.job:
        q = run(["squeue", "-j", trial.job, "--states=all", "-o", "%i %T %r %S %e"])
        lines.append(f"squeue: {(q.stdout + q.stderr).strip()}")
        lines.append("scontrol: " + run(["scontrol", "show", "job", trial.job]).stdout.strip().replace("\n", " | ")[:800])
    if trial.execution:
        lines.append("gear show: " + bench.gear("show", trial.execution, "--json").stdout.strip()[:1500])
    return "\n".join(lines)


def job_processes(job: str) -> dict[int, str]:
    """Processes of this user that carry SLURM_JOB_ID=job (pid -> command line). The local cluster
    is one machine, so the compute node's processes are visible here."""
    needle = f"\0SLURM_JOB_ID={job}\0".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            if needle in b"\0" + environ + b"\0":
                found[int(name)] = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
    return found


def check_left_running(trial: Trial) -> None:
    """Once Slurm has ended the job (and gear closed the execution), nothing of it may still run: a
    program left running could write into the saved working directory after it was reported.
    Such processes are recorded and then killed (they are this benchmark's own)."""
    if not trial.job:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = run(["squeue", "-h", "-j", trial.job, "--states=all", "-o", "%T"]).stdout.strip()
        if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED"):
            break
        time.sleep(1)
    time.sleep(2)  # slurmstepd's own clean-up
    left = job_processes(trial.job)
    for pid, cmd in sorted(left.items()):
        # The trap's `( sleep KILL_AFTER; kill -KILL $payload ) &`: a subshell of the batch script.
        timer = "slurm_script" in cmd or cmd.startswith("sleep ")
        (trial.left_timer if timer else trial.left_running).append(f"{pid} {cmd}")
    if trial.left_running:
        trial.problems.append(f"the program still ran after Slurm ended job {trial.job} and gear closed the "
                              f"execution: {'; '.join(trial.left_running)}")
    if trial.left_timer:
        trial.problems.append(f"the batch script's kill timer outlived job {trial.job}: {'; '.join(trial.left_timer)}")
    if left:
        for pid in left:
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def run_trial(bench: Bench, code: Path, fault: str, index: int) -> Trial:
    trial = Trial(fault, index)
    try:
        _run_trial(bench, code, trial)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not crash
        trial.problems.append(f"the trial itself failed: {exc!r}")
        log(traceback.format_exc())
    if trial.problems:
        trial.details = describe(bench, trial)
    return trial


def _run_trial(bench: Bench, code: Path, trial: Trial) -> None:
    fault = trial.fault
    compute_type = "stress-short" if fault == "timeout" else "stress-1"
    trial.submitted = time.monotonic()
    trial.execution, trial.job = bench.submit(
        "run", "-c", f"stress-{fault}", "-r", compute_type, "--code", str(code), "-m", f"stress {fault} {trial.index}",
        "--", "python3", "writer.py", str(FILES), str(SLEEP))
    exec_dir = bench.exec_dir(trial.execution)
    home = exec_dir / "home"

    # The fault comes once the program has written and fsynced its files and then the marker.
    deadline = time.monotonic() + 600
    while not (home / "marker").exists():
        row = bench.record(trial.execution)
        if row and row["status"] in CLOSED:
            if fault == "timeout" and row["status"] == "timeout" and not row.get("note"):
                # Slurm checks for the warning about every 30-60 s, so a 1-minute job can get its
                # USR1 right after it starts: a correct timeout, with nothing written yet to check.
                trial.early = True
            else:
                trial.problems.append(f"closed as {row['status']} before the program wrote its marker")
            break
        if time.monotonic() > deadline:
            trial.problems.append("the marker did not appear within 600 s")
            run(["scancel", trial.job])
            break
        time.sleep(0.25)
    else:
        trial.marker = time.monotonic()

    if trial.marker is not None:
        trial.injected = time.monotonic()
        if fault == "stop":
            result = bench.gear("stop", trial.execution, timeout=150)
        elif fault == "stop-now":
            result = bench.gear("stop", trial.execution, "--now")
        elif fault == "scancel":
            result = run(["scancel", trial.job])
        elif fault == "sigkill":
            result = run(["scancel", "--signal=KILL", "--batch", trial.job])
        elif fault == "sigkill-full":
            result = run(["scancel", "--signal=KILL", "--full", trial.job])
        elif fault == "requeue":
            result = run(["scontrol", "requeue", trial.job])
        else:  # timeout: Slurm does it
            result = None
        if result is not None:
            trial.injection = (result.stdout + result.stderr).strip()
            if result.returncode != 0:
                trial.problems.append(f"the fault command exited {result.returncode}: {trial.injection}")

    row = bench.wait_closed(trial.execution, timeout=480 if fault == "requeue" else 300)
    if row is None:
        trial.problems.append("gear did not report the execution closed in time (hang?)")
        trial.details = describe(bench, trial)  # before cancelling: the state as it hung
        run(["scancel", trial.job])
        row = bench.wait_closed(trial.execution, timeout=120) or bench.record(trial.execution) or {}
    trial.closed = row.get("_seen")
    trial.status = row.get("status", "?")
    trial.exit_code = row.get("exit_code")
    trial.note = row.get("note")
    check_left_running(trial)

    if trial.marker is not None:
        trial.missing, trial.corrupt = check_files(home)
        trial.lost = trial.missing + trial.corrupt
        if trial.lost:
            trial.problems.append(f"{trial.missing} expected file(s) missing, {trial.corrupt} with a wrong checksum")
        if not (home / "marker").exists():
            trial.problems.append("the marker is missing from the saved working directory")
        if fault == "requeue":
            earlier = exec_dir / "runs" / "1"
            missing, corrupt = check_files(earlier)
            if missing + corrupt:
                trial.problems.append(f"runs/1 (the earlier run's directory): {missing} missing, {corrupt} corrupt")
            if not (home / "restart-1.txt").exists():
                trial.problems.append("the requeued run did not run (no restart-1.txt)")
    if trial.status not in EXPECTED[fault]:
        trial.problems.append(f"status {trial.status!r}, expected {' or '.join(sorted(EXPECTED[fault]))}")
    if fault in SAVES and trial.note:
        trial.problems.append(f"the record says the save is incomplete: {trial.note}")
    if fault == "sigkill" and not trial.note and trial.status in CLOSED:
        trial.problems.append("a SIGKILLed job closed without a note that the save may be incomplete")
    if fault == "stop" and trial.injection and "the working directory was saved" not in trial.injection:
        trial.problems.append(f"gear stop did not say the working directory was saved: {trial.injection!r}")


def fault_figures(bench: Bench, repeat: int, requeue_repeat: int, parallel: int, faults: list[str]) -> list[Trial]:
    code = bench.tmp / "code-writer"
    code.mkdir()
    (code / "writer.py").write_text(WRITER)
    main = [f for f in faults if f != "requeue"]
    # Round-robin, so every batch mixes the faults (and the 1-minute time-limit runs overlap the rest).
    plan = [(f, i + 1) for i in range(repeat) for f in main]
    requeues = [("requeue", i + 1) for i in range(requeue_repeat)] if "requeue" in faults else []
    log(f"faults: {len(plan)} trials, {parallel} at a time; requeue: {len(requeues)} trial(s), one at a time beside them")
    trials: list[Trial] = []
    done = 0
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool, \
            concurrent.futures.ThreadPoolExecutor(1) as requeue_pool:
        futures = [requeue_pool.submit(run_trial, bench, code, f, i) for f, i in requeues]
        futures += [pool.submit(run_trial, bench, code, f, i) for f, i in plan]
        for future in concurrent.futures.as_completed(futures):
            trial = future.result()
            trials.append(trial)
            done += 1
            log(f"{done}/{len(futures)} {FAULT_LABELS[trial.fault]} #{trial.index} {trial.execution}: "
                f"{trial.status}, lost {trial.lost}" + (f"  DEFECT: {'; '.join(trial.problems)}" if trial.defect else ""))
    return trials


def print_fault_table(trials: list[Trial], faults: list[str]) -> None:
    print(f"{'fault':<30} {'runs':>4} {'files lost':>11}  {'wrong completed':>15}  {'unexpected':>10}  "
          f"{'program left':>12}  {'timer left':>10}  {'fault->closed med/max':>21}  statuses")
    for fault in faults:
        rows = [t for t in trials if t.fault == fault]
        if not rows:
            continue
        checked = [t for t in rows if t.marker is not None]
        lost = sum(t.lost for t in checked)
        wrong_completed = sum(1 for t in rows if t.status == "completed" and "completed" not in EXPECTED[fault])
        unexpected = sum(1 for t in rows if t.status not in EXPECTED[fault])
        start = {t.index: (t.injected if t.injected is not None else t.marker) for t in rows}
        latency = [t.closed - start[t.index] for t in rows if t.closed is not None and start[t.index] is not None]
        histogram = collections.Counter(t.status + (" (note)" if t.note else "") for t in rows)
        statuses = ", ".join(f"{s} x{n}" for s, n in sorted(histogram.items()))
        early = sum(1 for t in rows if t.early)
        if early:
            statuses += f" ({early} warned before the program wrote its files: not checked)"
        left = sum(1 for t in rows if t.left_running)
        timer = sum(1 for t in rows if t.left_timer)
        print(f"{FAULT_LABELS[fault]:<30} {len(rows):>4} {f'{lost}/{len(checked) * FILES}':>11}  {wrong_completed:>15}  "
              f"{unexpected:>10}  {left:>12}  {timer:>10}  {seconds(latency):>21}  {statuses}")
    print("files lost: expected files missing or with a wrong SHA-256 in the saved working directory, out of "
          f"{FILES} per run (goal 0). fault->closed: from the fault (time limit: from the marker) until "
          f"`gear status` first showed the execution closed (observed every {MONITOR_INTERVAL:.0f} s). "
          "(note): the record carries a note that the save may be incomplete. program left: executions whose "
          "program (apptainer, python) still ran after Slurm had ended the job and gear had closed the execution; "
          "timer left: the same for the batch script's `( sleep 20; kill -KILL $payload ) &` subshell "
          "(both found in /proc 2 s after Slurm listed the job as ended, then killed by this script).")


# --- continuation ---

def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    state = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else "-"
            state[os.path.relpath(path, root)] = (digest, info.st_mode)
    return state


def inodes(root: Path) -> set[tuple[int, int]]:
    out = set()
    for directory, _dirs, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(directory, name))
            out.add((info.st_dev, info.st_ino))
    return out


def apparent(root: Path, exclude: set[tuple[int, int]] | None = None) -> tuple[int, int, int]:
    """(bytes, blocks in bytes, files) of the regular files under root whose inode is not in `exclude`."""
    size = blocks = count = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(directory, name))
            if exclude is not None and (info.st_dev, info.st_ino) in exclude:
                continue
            size += info.st_size
            blocks += info.st_blocks * 512
            count += 1
    return size, blocks, count


def du(*paths: Path) -> list[int]:
    out = run(["du", "-s", "-B1", *map(str, paths)]).stdout
    return [int(line.split()[0]) for line in out.splitlines() if line.strip()]


def wait_final(bench: Bench, watcher: Watcher, execution: str, job: str, timeout: float = 600) -> list[float]:
    """Phase start times of the job (syncing, running, saving, final), once its final record is written."""
    exec_dir = bench.exec_dir(execution)
    deadline = time.monotonic() + timeout
    while True:
        phases = watcher.phases(exec_dir)
        if len(phases) >= 4:
            return phases
        row = bench.record(execution)
        if row and row["status"] in CLOSED:
            return phases
        if time.monotonic() > deadline:
            run(["scancel", job])
            raise RuntimeError(f"{execution} wrote no final record within {timeout:.0f} s")
        time.sleep(0.05)


def wait_reported(bench: Bench, execution: str, timeout: float = 120) -> tuple[float, dict]:
    """When gear itself first says the execution closed (asked every 0.5 s: one squeue each)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = bench.gear("status", execution, "--json")
        try:
            row = json.loads(proc.stdout)
        except ValueError:
            row = {}
        if isinstance(row, list):
            row = row[0] if row else {}
        if row.get("status") in CLOSED:
            return time.time(), row
        if time.monotonic() > deadline:
            raise RuntimeError(f"gear did not report {execution} closed within {timeout:.0f} s: {row}")
        time.sleep(0.5)


def measure_continue(bench: Bench, watcher: Watcher, parent: str, modify: int, total: int, no_home: bool) -> dict:
    args = ["continue", parent] + (["--no-home"] if no_home else []) + ["--", "python3", "modify.py", str(modify), str(total)]
    os.sync()  # nobody pays for the previous step's writeback
    submitted = time.time()
    execution, job = bench.submit(*args)
    phases = wait_final(bench, watcher, execution, job)
    reported, row = wait_reported(bench, execution)
    if row.get("status") != "completed" or len(phases) < 4:
        log_file = bench.exec_dir(execution) / "output.log"
        output = log_file.read_text(errors="replace") if log_file.exists() else "(no output.log)"
        raise RuntimeError(f"{execution} ended {row.get('status')} ({row.get('note')}); phases seen {len(phases)};"
                           f" record: {row}; log:\n{output}")
    syncing, running, saving, final = phases[:4]
    return {"execution": execution, "home": Path(row["workdir"]),
            "to_final": final - submitted, "to_reported": reported - submitted,
            "queue": syncing - submitted, "syncing": running - syncing, "running": saving - running,
            "saving": final - saving}


def continuation_figures(bench: Bench, files: int, size: int, modify: int, repeat: int) -> dict:
    code = bench.tmp / "code-continue"
    code.mkdir()
    (code / "gen.py").write_text(GEN)
    (code / "modify.py").write_text(MODIFY)
    container = "stress-continue"
    log(f"continuation: parent writes {files} files of {size} bytes")
    parent, job = bench.submit("run", "-c", container, "--code", str(code), "-m", "stress parent",
                               "--", "python3", "gen.py", str(files), str(size))
    row = bench.wait_closed(parent, timeout=900)
    if not row or row["status"] != "completed":
        raise RuntimeError(f"the parent {parent} did not complete: {row}")
    parent_home = Path(row["workdir"])
    before = tree_digest(parent_home)
    parent_inodes = inodes(parent_home)
    parent_bytes, parent_blocks, parent_files = apparent(parent_home)
    changed = modify * size
    fig: dict = {}

    others = run(["squeue", "-h", "-t", "R", "-o", "%u"]).stdout.split()
    fig["context"] = (f"load average {os.getloadavg()[0]:.2f}; jobs running on the cluster when it started: "
                      f"{len(others)} ({', '.join(sorted(set(others))) or 'none'})")
    watcher = Watcher()
    watcher.watch(bench.containers / container, follow=True)
    rows = []
    try:
        for r in range(repeat):
            log(f"continuation repetition {r + 1}/{repeat}")
            entry: dict = {}

            def anchor(r: int = r, entry: dict = entry) -> None:
                copy = bench.tmp / f"rsync-copy-{r}"
                os.sync()
                start = time.perf_counter()
                result = run(["rsync", "-a", f"{parent_home}/", f"{copy}/"], timeout=900)
                entry["rsync_s"] = time.perf_counter() - start
                if result.returncode != 0:
                    raise RuntimeError(f"rsync failed ({result.returncode}): {result.stderr}")
                entry["rsync_bytes"], entry["rsync_blocks"], _ = apparent(copy)
                entry["rsync_du"] = du(copy)[0]
                remove_tree(copy)
                # References, not anchors: what making hard links to every file costs at best.
                for key, argv in (("linkdest_s", ["rsync", "-a", f"--link-dest={parent_home}", f"{parent_home}/"]),
                                  ("cpal_s", ["cp", "-al", f"{parent_home}/."])):
                    os.sync()
                    start = time.perf_counter()
                    result = run(argv + [f"{copy}/"], timeout=900)
                    entry[key] = time.perf_counter() - start
                    if result.returncode != 0:
                        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr}")
                    remove_tree(copy)

            # Alternate the order, so neither side always runs right after the other.
            if r % 2 == 0:
                anchor()
            child = measure_continue(bench, watcher, parent, modify, files, no_home=False)
            empty = measure_continue(bench, watcher, parent, modify, files, no_home=True)
            if r % 2 == 1:
                anchor()
            home = child["home"]
            entry.update(child={k: v for k, v in child.items() if k != "home"},
                         empty={k: v for k, v in empty.items() if k != "home"})
            entry["extra_bytes"], entry["extra_blocks"], entry["extra_files"] = apparent(home, exclude=parent_inodes)
            both = du(parent_home, home)
            entry["du_child"] = both[1] if len(both) > 1 else None
            entry["child_files"] = apparent(home)[2]
            # The child holds the changes; the parent is unchanged.
            for path in modified_paths(modify, files):
                data = (home / path).read_bytes()
                if b"continued" not in data[100:200] or len(data) != size:
                    raise RuntimeError(f"{child['execution']}: {path} does not hold the change")
            rows.append(entry)
    finally:
        watcher.close()
    after = tree_digest(parent_home)
    changed_in_parent = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return {**fig, "parent": parent, "parent_files": parent_files, "parent_bytes": parent_bytes,
            "parent_blocks": parent_blocks, "changed": changed, "modify": modify, "rows": rows,
            "parent_changed": changed_in_parent}


def print_continuation(fig: dict) -> None:
    rows = fig["rows"]
    med = lambda key, sub=None: statistics.median(r[sub][key] if sub else r[key] for r in rows)  # noqa: E731
    rsync_s = med("rsync_s")
    n = len(rows)
    print(f"parent {fig['parent']}: {fig['parent_files']} files, {human(fig['parent_bytes'])} apparent, "
          f"{human(fig['parent_blocks'])} on disk; child: `gear continue -- python3 modify.py {fig['modify']}` "
          f"({fig['modify']} files rewritten in place, {human(fig['changed'])} of files changed); "
          f"{n} repetition(s), medians")
    print(f"  {fig['context']}")
    print(f"  anchor `rsync -a PARENT_HOME/ fresh/`: {rsync_s:.2f} s"
          f" (min {min(r['rsync_s'] for r in rows):.2f}, max {max(r['rsync_s'] for r in rows):.2f})")
    overhead = med("syncing", "child") + med("saving", "child")
    print(f"  references (not anchors): `rsync -a --link-dest=PARENT PARENT/ fresh/` {med('linkdest_s'):.2f} s"
          f" ({med('linkdest_s') / rsync_s:.2f}x), `cp -al PARENT/. fresh/` {med('cpal_s'):.2f} s"
          f" ({med('cpal_s') / rsync_s:.2f}x)")
    print(f"  continue, job's own syncing + saving:   {overhead:.2f} s"
          f" (syncing {med('syncing', 'child'):.2f} s, saving {med('saving', 'child'):.2f} s)"
          f"   | ratio to rsync {overhead / rsync_s:.2f}x (goal <= 0.1x)")
    # Queue waits vary by a second between jobs here: compare the jobs' own
    # phases (syncing + program + saving), where the hard links made while the
    # program runs show up.
    in_job = lambda sub: statistics.median(r[sub]["syncing"] + r[sub]["running"] + r[sub]["saving"]  # noqa: E731
                                           for r in rows)
    carried = in_job("child") - in_job("empty")
    print(f"  continue, syncing + program + saving:   {in_job('child'):.2f} s   | --no-home {in_job('empty'):.2f} s:"
          f" carrying the parent adds {carried:.2f} s = {carried / rsync_s:.2f}x rsync")
    extra = med("to_final", "child") - med("to_final", "empty")
    print(f"  continue, submit -> final record:       {med('to_final', 'child'):.2f} s"
          f"   | same with --no-home {med('to_final', 'empty'):.2f} s: carrying the parent costs {extra:.2f} s"
          f" = {extra / rsync_s:.2f}x rsync")
    print(f"  continue, submit -> gear says completed: {med('to_reported', 'child'):.2f} s"
          f"   | --no-home {med('to_reported', 'empty'):.2f} s   | ratio to rsync {med('to_reported', 'child') / rsync_s:.2f}x")
    print(f"  (--no-home: syncing {med('syncing', 'empty'):.2f} s, saving {med('saving', 'empty'):.2f} s;"
          f" queue+start before the first record: child {med('queue', 'child'):.2f} s, --no-home {med('queue', 'empty'):.2f} s;"
          f" program: child {med('running', 'child'):.2f} s)")
    print(f"  extra storage of the child (files whose inode is not the parent's): {human(med('extra_bytes'))} apparent"
          f" in {int(med('extra_files'))} files, {human(med('extra_blocks'))} of blocks;"
          f" du -s PARENT CHILD: child {human(med('du_child'))} (directories included)")
    print(f"  anchor rsync copy: {human(med('rsync_bytes'))} apparent, du {human(med('rsync_du'))}"
          f"   | ratio extra/copy: {med('extra_bytes') / med('rsync_bytes'):.4f} apparent,"
          f" {med('du_child') / med('rsync_du'):.4f} du   | what changed: {human(fig['changed'])}"
          f" -> extra/changed {med('extra_bytes') / fig['changed']:.2f}x apparent")
    for i, r in enumerate(rows, 1):
        c, e = r["child"], r["empty"]
        print(f"  repetition {i}: rsync {r['rsync_s']:.2f} s, --link-dest {r['linkdest_s']:.2f} s, cp -al {r['cpal_s']:.2f} s"
              f" | {c['execution']}: queue {c['queue']:.2f} + syncing {c['syncing']:.2f} + program {c['running']:.2f}"
              f" + saving {c['saving']:.2f} = {c['to_final']:.2f} s to the final record, {c['to_reported']:.2f} s to gear"
              f" | --no-home {e['execution']}: {e['queue']:.2f} + {e['syncing']:.2f} + {e['running']:.2f} + {e['saving']:.2f}"
              f" = {e['to_final']:.2f} s, {e['to_reported']:.2f} s")
    if fig["parent_changed"]:
        print(f"  DEFECT: the parent's working directory changed: {fig['parent_changed'][:10]}")
    else:
        print(f"  the parent's working directory is unchanged (SHA-256 and mode of all {fig['parent_files']} files)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="repetitions of each fault (default 20)")
    parser.add_argument("--quick", action="store_true", help="a smaller run: 3 of each fault, 1 requeue, 1 continuation")
    parser.add_argument("--requeue-repeat", type=int, help="repetitions of requeue (default ceil(repeat/4))")
    parser.add_argument("--parallel", type=int, default=4, help="fault executions at a time, besides requeue (default 4)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--files", type=int, default=20000, help="files in the parent's working directory (default 20000)")
    parser.add_argument("--file-size", type=int, default=2048)
    parser.add_argument("--modify", type=int, default=10, help="files the continuation changes (default 10)")
    parser.add_argument("--continue-repeat", type=int, help="continuation repetitions (default 5; 1 with --quick)")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--no-continue", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the storage root in /tmp")
    args = parser.parse_args()
    repeat = 3 if args.quick and "--repeat" not in sys.argv else args.repeat
    requeue_repeat = args.requeue_repeat if args.requeue_repeat is not None else (1 if args.quick else math.ceil(repeat / 4))
    continue_repeat = args.continue_repeat if args.continue_repeat is not None else (1 if args.quick else 5)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")

    started = time.monotonic()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"user {pwd.getpwuid(os.getuid()).pw_name}; faults x{repeat} (requeue x{requeue_repeat}), "
          f"{args.parallel} at a time; continuation x{continue_repeat}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="gear-bench-stress-", dir="/tmp"))
    bench = Bench(tmp)
    bench.monitor.start()
    defects = False
    try:
        if not args.no_continue:
            # First, while this script has nothing else on the node.
            t0 = time.monotonic()
            fig = continuation_figures(bench, args.files, args.file_size, args.modify, continue_repeat)
            print(f"\n== continuation ({time.monotonic() - t0:.0f} s)")
            print_continuation(fig)
            defects |= bool(fig["parent_changed"])
        if not args.no_faults:
            t0 = time.monotonic()
            trials = fault_figures(bench, repeat, requeue_repeat, args.parallel, faults)
            print(f"\n== faults ({time.monotonic() - t0:.0f} s, {len(trials)} executions)")
            print_fault_table(trials, faults)
            bad = [t for t in trials if t.defect]
            defects |= bool(bad)
            print(f"executions with a defect: {len(bad)}")
            # Each kind of problem in full once (its first execution), then the others by id.
            kinds: dict[tuple[str, str], list[Trial]] = {}
            for trial in sorted(bad, key=lambda t: (t.fault, t.index)):
                for problem in trial.problems:
                    kind = re.sub(r"[0-9]+", "N", " ".join(problem.split(":")[0].split()[:8]))
                    kinds.setdefault((trial.fault, kind), []).append(trial)
            shown: set[str] = set()
            for (fault, kind), rows in kinds.items():
                print(f"\n* {FAULT_LABELS[fault]}: {kind}: {len(rows)} of {sum(t.fault == fault for t in trials)} "
                      f"executions ({', '.join(t.execution for t in rows)})")
                if rows[0].execution not in shown:
                    shown.add(rows[0].execution)
                    print(rows[0].details)
        print(f"\n`gear status --json` calls by the observer: {bench.monitor_calls}, failed: {bench.monitor_errors}")
    finally:
        bench.stopped = True
        bench.cancel_leftovers()
        if defects or args.keep:
            print(f"storage kept for inspection: {tmp} (GEAR_STORAGE_ROOT={bench.root}, GEAR_SITE_CONFIG={bench.site})")
        else:
            remove_tree(tmp)
        print(f"total {time.monotonic() - started:.0f} s")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
