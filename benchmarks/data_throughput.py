"""Upload and stage throughput of issue 3, measured inside the local cluster as an ordinary user.

The tree: 20,000 files of 2 KiB in 20 directories plus one 512 MiB file
(random bytes), built in a temporary directory under /tmp. Goal: gear moves
it at >= 0.9x the throughput of a raw `rsync -a` of the same tree, measured
in the same run (ratio = rsync's time / gear's time).

Upload is measured in pairs (anchor, upload), stage in sets of four
(anchor, the job's rsync command alone with and without
--no-inc-recursive, stage), the order rotating; each gear figure is
divided by the anchor measured in the same pair or set:

- anchor: `rsync -a TREE/ DEST/` into a fresh directory of the private
  storage root (same file system as the site's storage root);
- upload: `gear data upload NAME TREE` (after an untimed `gear data create`),
  the command's whole wall time; its own report gives the rsync part;
- stage: `gear run -c stage --code TREE -- true`. Two copies of the tree:
  the code snapshot `gear run` makes before it submits (timed as the command's
  wall time), and the job's `syncing` phase that copies the snapshot into the
  working directory. The phase is timed from the batch script's first status
  record to its `running` record, as the files appear in the execution
  directory (inotify; the records themselves carry 1-second timestamps only).

To say where the time goes (profile, not part of the goal):

- the job's rsync command alone (`--safe-links --info=progress2
  --no-inc-recursive --ignore-existing --chmod=u+w`), its progress lines
  read by a fast reader, and the same without `--no-inc-recursive`;
- an upload's own time beside its rsync: the command's wall time less the
  rsync time it reports (interpreter, ledger, closing the version).

Caches: the script runs as an ordinary user and cannot drop the page cache,
so every copy runs on a warm cache: the tree is read once before the first
measurement (the machine's memory holds it many times over), and `sync` runs
before each timed copy so that no copy pays for an earlier one's writeback.
Copies are kept until the end, then removed (datasets with `gear data rm`,
then the private storage root and the tree). Noise: on this machine's disk
(ext4 without a journal) a copy of many small files takes two to three
times longer from one copy to the next, whoever makes it; most of the
kernel's time then goes to ext4's inode allocator skipping inodes freed in
the last minutes (`recently_deleted()`, seen with perf), and other users
of the machine create and delete files too. So each gear figure is compared
with the anchor measured next to it, the spread is printed, and the best
of each is given beside the medians.

Run it with `bash benchmarks/run data_throughput.py` (as root; it uses gear
devcluster). Options: `--pairs N` (default 6), `--stages N` (sets, default 2),
`--only upload` or `--only stage` (one part alone).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobwatch import Watcher, remove_tree, submitted, wait_for_job

sys.path.insert(0, "/opt/gear-hpc/lib")  # gear as installed in the local cluster (for the profile)

SMALL_FILES, SMALL_SIZE, DIRECTORIES = 20_000, 2048, 20
BIG_SIZE = 512 << 20
JOB_TIMEOUT = 600.0
# The copy the batch script makes of the code (job.sh.j2, copy()).
JOB_RSYNC = ["rsync", "-a", "--safe-links", "--info=progress2", "--no-inc-recursive", "--ignore-existing",
             "--chmod=u+w"]


def build_tree(tree: Path) -> tuple[int, int]:
    per_dir = SMALL_FILES // DIRECTORIES
    for d in range(DIRECTORIES):
        directory = tree / f"d{d:02d}"
        directory.mkdir(parents=True)
        for i in range(per_dir):
            (directory / f"f{i:04d}.bin").write_bytes(os.urandom(SMALL_SIZE))
    with open(tree / "big.bin", "wb") as handle:
        for _ in range(BIG_SIZE // (8 << 20)):
            handle.write(os.urandom(8 << 20))
    return SMALL_FILES * SMALL_SIZE + BIG_SIZE, SMALL_FILES + 1


def read_tree(tree: Path) -> None:
    """Read every file once, so that every copy starts from a warm page cache."""
    for directory, _subdirs, files in os.walk(tree):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                while handle.read(8 << 20):
                    pass



def site_storage_root() -> str | None:
    config = Path(os.environ.get("GEAR_SITE_CONFIG", "/etc/gear")) / "site.yaml"
    try:
        match = re.search(r"^storage_root:\s*(\S+)", config.read_text(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1).strip("'\"") if match else None


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tree = tmp / "tree"
        self.root = tmp / "storage"
        (self.root / "users").mkdir(parents=True)
        self.env = {**os.environ, "GEAR_STORAGE_ROOT": str(self.root)}
        self.container_dir = self.root / "users" / pwd.getpwuid(os.getuid()).pw_name / "containers" / "stage"
        self.jobs: list[str] = []
        self.datasets: list[str] = []
        self.watcher = Watcher()

    def gear(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["gear", *args], env=self.env, capture_output=True, text=True, check=True)

    def submit(self, *args: str) -> tuple[str, str]:
        execution, job = submitted(self.gear("run", *args))
        self.jobs.append(job)
        return execution, job

    def warm_up(self) -> None:
        """A tiny execution in the container `stage`: first use of the image; creates the directory to watch."""
        code = self.tmp / "tiny"
        code.mkdir()
        (code / "README").write_text("warm-up\n")
        execution, job = self.submit("-c", "stage", "--code", str(code), "--", "true")
        self.watcher.watch(self.container_dir, follow=True)
        status = self.container_dir / execution.split("/")[-1] / "status.json"
        wait_for_job(job, lambda: status.is_file() and '"final"' in status.read_text(), "the warm-up run", timeout=JOB_TIMEOUT)

    def anchor(self, r: int) -> dict[str, float]:
        dest = self.root / f"anchor-{r}"
        start = time.perf_counter()
        subprocess.run(["rsync", "-a", f"{self.tree}/", f"{dest}/"], check=True)
        return {"time": time.perf_counter() - start}

    def upload(self, r: int) -> dict[str, float]:
        name = f"upload-{r}"
        self.gear("data", "create", name)
        self.datasets.append(name)
        start = time.perf_counter()
        out = self.gear("data", "upload", name, str(self.tree)).stdout
        wall = time.perf_counter() - start
        match = re.search(r" in ([\d.]+) s\b", out)
        return {"time": wall, "rsync": float(match.group(1)) if match else float("nan")}

    def stage(self, r: int) -> dict[str, float]:
        start = time.perf_counter()
        execution, job = self.submit("-c", "stage", "--code", str(self.tree), "--", "true")
        submit = time.perf_counter() - start
        exec_dir = self.container_dir / execution.split("/")[-1]
        wait_for_job(job, lambda: len(self.watcher.phases(exec_dir)) >= 4, f"{execution}'s final record", timeout=JOB_TIMEOUT)
        records = self.watcher.phases(exec_dir)
        status = (exec_dir / "status.json").read_text()
        if len(records) < 2 or '"completed"' not in status:
            raise RuntimeError(f"{execution} did not complete: {status}")
        return {"submit": submit, "time": records[1] - records[0]}

    def job_rsync(self, r: int, without: str | None = None) -> dict[str, float]:
        """The batch script's rsync command alone (less the option `without`), its progress lines read by a
        fast reader."""
        argv = [arg for arg in JOB_RSYNC if arg != without]
        start = time.perf_counter()
        proc = subprocess.run([*argv, f"{self.tree}/", f"{self.root}/job-rsync-{r}{'-' if without else ''}/"],
                              capture_output=True, check=True)
        return {"time": time.perf_counter() - start,
                "progress_lines": proc.stdout.count(b"\r") + proc.stdout.count(b"\n")}

    def cleanup(self) -> None:
        if self.jobs:
            subprocess.run(["scancel", *self.jobs], capture_output=True)
        for name in self.datasets:
            subprocess.run(["gear", "data", "rm", name], env=self.env, capture_output=True)
        self.watcher.close()


def main() -> None:
    pairs = int(sys.argv[sys.argv.index("--pairs") + 1]) if "--pairs" in sys.argv else 6
    stages = int(sys.argv[sys.argv.index("--stages") + 1]) if "--stages" in sys.argv else 2
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    if only not in (None, "upload", "stage"):
        sys.exit(f"--only {only}: say upload or stage")
    if only == "upload":
        stages = 0
    elif only == "stage":
        pairs = 0
    began = time.monotonic()
    rsync_version = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.split()[2]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"rsync {rsync_version}, load average {os.getloadavg()[0]:.1f}")
    copies = 2 * pairs + 5 * stages
    free = shutil.disk_usage("/tmp").free
    if free < (copies + 2) * (SMALL_FILES * SMALL_SIZE + BIG_SIZE):
        sys.exit(f"not enough room in /tmp: {free / 1e9:.1f} GB free, the {copies} copies need "
                 f"{(copies + 2) * (SMALL_FILES * SMALL_SIZE + BIG_SIZE) / 1e9:.1f} GB")
    tmp = Path(tempfile.mkdtemp(prefix="gear-bench-data-", dir="/tmp"))
    bench = Bench(tmp)
    try:
        size, files = build_tree(bench.tree)
        read_tree(bench.tree)
        site_root = site_storage_root()
        same = site_root and os.path.isdir(site_root) and os.stat(site_root).st_dev == os.stat(bench.root).st_dev
        print(f"tree: {SMALL_FILES:,} files of {SMALL_SIZE // 1024} KiB in {DIRECTORIES} directories + one "
              f"{BIG_SIZE >> 20} MiB file = {files:,} files, {size / 1e6:.1f} MB; private storage root {bench.root} "
              + ("(same file system as the site's storage root "
                 f"{site_root})" if same else f"(NOT on the file system of the site's storage root {site_root})"))
        if stages:
            bench.warm_up()

        def measure(name: str, what, r: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
            os.sync()  # no copy pays for an earlier one's writeback
            return what(r)

        # Upload: pairs (anchor, upload), the order alternating.
        anchors_u, uploads = [], []
        loads: list[float] = []
        for r in range(pairs):
            order = ["rsync", "upload"] if r % 2 == 0 else ["upload", "rsync"]
            for name in order:
                (anchors_u if name == "rsync" else uploads).append(
                    measure(name, bench.anchor if name == "rsync" else bench.upload, r))
            loads.append(os.getloadavg()[0])
            print(f"upload pair {r + 1} ({' -> '.join(order)}): rsync -a {anchors_u[-1]['time']:.2f} s | "
                  f"gear data upload {uploads[-1]['time']:.2f} s (its rsync {uploads[-1]['rsync']:.2f} s) | "
                  f"load {loads[-1]:.1f}", flush=True)
        # Stage: quadruples (anchor, the job's rsync command alone, the same without --no-inc-recursive,
        # gear run), the order rotating.
        anchors_s, alone, alone_inc, staged = [], [], [], []
        kinds = {"rsync": (bench.anchor, anchors_s), "job-rsync": (bench.job_rsync, alone),
                 "job-rsync-inc": (lambda r: bench.job_rsync(r, without="--no-inc-recursive"), alone_inc),
                 "stage": (bench.stage, staged)}
        for r in range(stages):
            order = list(kinds)[r % 4:] + list(kinds)[:r % 4]
            for name in order:
                kinds[name][1].append(measure(name, kinds[name][0], pairs + r))
            print(f"stage set {r + 1} ({' -> '.join(order)}): rsync -a {anchors_s[-1]['time']:.2f} s | job's rsync "
                  f"command alone {alone[-1]['time']:.2f} s, without --no-inc-recursive {alone_inc[-1]['time']:.2f} s"
                  f" | gear run: snapshot (whole command) {staged[-1]['submit']:.2f} s, syncing phase in the job "
                  f"{staged[-1]['time']:.2f} s | load {os.getloadavg()[0]:.1f}", flush=True)
            loads.append(os.getloadavg()[0])

        def med(rows: list[dict[str, float]], key: str = "time") -> float:
            return statistics.median(row[key] for row in rows)

        def ratio(anchors: list[dict[str, float]], rows: list[dict[str, float]], key: str = "time") -> float:
            return statistics.median(a["time"] / row[key] for a, row in zip(anchors, rows, strict=True))

        def best_ratio(anchors: list[dict[str, float]], rows: list[dict[str, float]], key: str = "time") -> float:
            return min(a["time"] for a in anchors) / min(row[key] for row in rows)

        def line(label: str, seconds: float, goal_ratio: float | None = None, best: float | None = None) -> str:
            text = (f"  {label:<50} {seconds:6.2f} s  {size / seconds / 1e6:6.1f} MB/s  "
                    f"{files / seconds:6.0f} files/s")
            if goal_ratio is not None:
                text += f"  ratio {goal_ratio:4.2f} ({'met' if goal_ratio >= 0.9 else 'MISSED'}, goal >= 0.9)"
            if best is not None:
                text += f", best of each {best:4.2f}"
            return text

        for row in staged:
            row["both"] = row["submit"] + row["time"]
        print("medians (ratio: the anchor's time / gear's time, per pair or set, then the median; best of each: "
              "the fastest anchor / gear's fastest):")
        if pairs:
            print(f" upload, {pairs} pairs:")
            print(line("anchor: rsync -a TREE/ DEST/", med(anchors_u)))
            print(line("gear data upload NAME TREE", med(uploads), ratio(anchors_u, uploads),
                       best_ratio(anchors_u, uploads)))
        if stages:
            print(f" stage, {stages} sets:")
            print(line("anchor: rsync -a TREE/ DEST/", med(anchors_s)))
            print(line("syncing phase in the job (copy into home)", med(staged), ratio(anchors_s, staged),
                       best_ratio(anchors_s, staged)))
            print(line("gear run's code snapshot (whole command)", med(staged, "submit"),
                       ratio(anchors_s, staged, "submit"), best_ratio(anchors_s, staged, "submit")))
            print(line("end to end: snapshot + syncing phase", med(staged, "both"), ratio(anchors_s, staged, "both"),
                       best_ratio(anchors_s, staged, "both")))
        print("where the time goes (medians):")
        if pairs:
            upload_rsync = med(uploads, "rsync")
            print(f"  upload: its rsync {upload_rsync:.2f} s (gear's own report), the rest "
                  f"{statistics.median(row['time'] - row['rsync'] for row in uploads):.2f} s (python start, "
                  "ledger, closing the version); its rsync / the anchor: "
                  f"{statistics.median(row['rsync'] / a['time'] for a, row in zip(anchors_u, uploads, strict=True)):.2f}")
        if stages:
            print(f"  stage: the job's rsync command alone {med(alone):.2f} s "
                  f"({int(med(alone, 'progress_lines')):,} progress lines, read by a fast reader) vs the syncing "
                  f"phase {med(staged):.2f} s: {med(staged) - med(alone):.2f} s go to the batch script's reading "
                  "of those lines")
            print(f"    the same rsync command without --no-inc-recursive: {med(alone_inc):.2f} s "
                  f"(ratio to its anchor {ratio(anchors_s, alone_inc):.2f}; with it: {ratio(anchors_s, alone):.2f})")
        everything = [row["time"] for row in anchors_u + anchors_s]
        print(f"  noise: the same `rsync -a` took {min(everything):.2f} to {max(everything):.2f} s in this run")
        print(f"measured in {time.monotonic() - began:.0f} s; load average now {os.getloadavg()[0]:.1f} "
              f"(during the pairs and sets: {min(loads):.1f} to {max(loads):.1f})", flush=True)
    finally:
        started = time.monotonic()
        bench.cleanup()
        remove_tree(tmp)
        print(f"cleaned up in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
