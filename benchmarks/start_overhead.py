"""Start overhead of issue 3, measured inside the local cluster as an ordinary user.

Job start -> user command, with five datasets bound, compared with a bare
`apptainer exec` of the same image in a plain Slurm job (goal: gear's
overhead is less than 1 s above the bare one). N runs of each, alternated,
after one warm-up run of each; medians.

- anchor: a batch script (partition cpu, same CPUs and memory as the compute
  type) whose first line is `date +%s.%N` and whose second runs
  `apptainer exec --containall IMAGE python3 -c 'import time; print(time.time())'`.
- gear: `gear run -d ds1:input0 … -d ds5:input4 -- python3 -c '…'` (the same
  command). Its job start is when the batch script writes its first status
  record (`syncing`): the script's `status.json.<pid>.tmp` appearing in the
  execution directory, seen through inotify (the record itself carries a
  1-second timestamp only). Both user-command times are the program's own
  `time.time()`, so the same clock is read on both sides.
- cross-check with one observer for both: from the moment Slurm creates the
  job's output file (inotify), which precedes the batch script.

Run it with `bash benchmarks/run start_overhead.py` (as root; it uses gear
devcluster). Options: `--repeats N` (default 10).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobwatch import Watcher, remove_tree, submitted, wait_for_job

PROGRAM = "import time; print(time.time())"
DEFAULT_IMAGE = "/var/lib/gear-devcluster/images/python.sif"
JOB_TIMEOUT = 180.0


def floats(path: Path) -> list[float]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [float(line) for line in text.split() if re.fullmatch(r"\d{9,}\.\d+", line)]


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "storage"
        (self.root / "users").mkdir(parents=True)
        self.env = {**os.environ, "GEAR_STORAGE_ROOT": str(self.root)}
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.jobs: list[str] = []
        self.watcher = Watcher()
        self.anchor_dir = tmp / "anchor"
        self.anchor_dir.mkdir()
        self.watcher.watch(self.anchor_dir)
        self.code = tmp / "code"
        self.code.mkdir()
        (self.code / "README").write_text("start-overhead benchmark: the command ignores this\n")
        self.container = "overhead"
        self.container_dir = self.root / "users" / self.user / "containers" / self.container

    def gear(self, *args: str) -> str:
        return subprocess.run(["gear", *args], env=self.env, capture_output=True, text=True, check=True).stdout

    def submit(self, *args: str) -> tuple[str, str]:
        """`gear run …`: (execution id, Slurm job id), read from what it prints (no extra gear command
        while the job starts: the observer keeps quiet)."""
        execution, job = submitted(subprocess.run(["gear", *args], env=self.env, capture_output=True, text=True))
        self.jobs.append(job)
        return execution, job

    def image_path(self) -> str:
        try:
            return json.loads(self.gear("images", "python", "--json"))["path"]
        except (subprocess.CalledProcessError, ValueError, KeyError):
            return DEFAULT_IMAGE

    def make_datasets(self) -> None:
        for k in range(1, 6):
            data = self.tmp / f"data{k}"
            data.mkdir()
            for i in range(3):
                (data / f"part{i}.txt").write_text(f"dataset {k} part {i}\n" * 10)
            self.gear("data", "create", f"ds{k}")
            self.gear("data", "upload", f"ds{k}", str(data))

    def anchor(self, image: str) -> dict[str, float]:
        script = self.anchor_dir / "anchor.sh"
        apptainer = shutil.which("apptainer") or "/usr/bin/apptainer"
        script.write_text("#!/bin/bash\ndate +%s.%N\n" + shlex.join([apptainer, "exec", "--containall", image,
                                                                     "python3", "-c", PROGRAM]) + "\n")
        submitted = time.time()
        job = subprocess.run(["sbatch", "--parsable", "-p", "cpu", "-c", "2", "--mem", "2G", "-t", "5",
                              "-J", "gear-bench-anchor", f"--chdir={self.anchor_dir}",
                              f"--output={self.anchor_dir}/anchor-%j.out", str(script)],
                             capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
        self.jobs.append(job)
        out = self.anchor_dir / f"anchor-{job}.out"
        wait_for_job(job, lambda: len(floats(out)) >= 2, "the anchor job", timeout=JOB_TIMEOUT)
        values = floats(out)
        if len(values) < 2:
            raise RuntimeError(f"anchor job {job} printed no times:\n{out.read_text()}")
        created = [t for t, n in self.watcher.created(self.anchor_dir) if n == out.name]
        script_start, user = values[0], values[1]
        return {"start_to_user": user - script_start,
                "output_to_user": user - created[0] if created else float("nan"),
                "submit_to_user": user - submitted}

    def gear_run(self) -> dict[str, float]:
        bindings = [arg for k in range(5) for arg in ("-d", f"ds{k + 1}:input{k}")]
        submitted = time.time()
        execution, job = self.submit("run", "-c", self.container, "--code", str(self.code), *bindings,
                                     "--", "python3", "-c", PROGRAM)
        exec_dir = self.container_dir / execution.split("/")[-1]
        wait_for_job(job, lambda: len(self.watcher.phases(exec_dir)) >= 4, f"{execution}'s final record", timeout=JOB_TIMEOUT)
        show = json.loads(self.gear("show", execution, "--json"))
        records = self.watcher.phases(exec_dir)
        values = floats(exec_dir / "output.log")
        if show["status"] != "completed" or not values or len(records) < 2:
            raise RuntimeError(f"{execution} ended {show['status']} ({show.get('note')}); records seen: "
                               f"{len(records)}; log:\n{(exec_dir / 'output.log').read_text()}")
        user = values[-1]
        created = [t for t, n in self.watcher.created(exec_dir) if n == "output.log"]
        return {"start_to_user": user - records[0],
                "output_to_user": user - created[0] if created else float("nan"),
                "submit_to_user": user - submitted,
                "syncing": records[1] - records[0],
                "running_to_user": user - records[1]}

    def warm_up(self, image: str) -> None:
        """One run of each, not counted: the image, Slurm and gear's first use; creates the container."""
        self.anchor(image)
        execution, job = self.submit("run", "-c", self.container, "--code", str(self.code), "--", "true")
        self.watcher.watch(self.container_dir, follow=True)
        status = self.container_dir / execution.split("/")[-1] / "status.json"
        wait_for_job(job, lambda: status.is_file() and '"final"' in status.read_text(), "the warm-up run", timeout=JOB_TIMEOUT)

    def cleanup(self) -> None:
        if self.jobs:
            subprocess.run(["scancel", *self.jobs], capture_output=True)
        for k in range(1, 6):
            subprocess.run(["gear", "data", "rm", f"ds{k}"], env=self.env, capture_output=True)
        self.watcher.close()



def ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:6.0f} ms  (min {min(values) * 1000:.0f}, "
            f"max {max(values) * 1000:.0f})")


def main() -> None:
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 10
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"{repeats} runs of each (alternated, after one warm-up run of each)")
    tmp = Path(tempfile.mkdtemp(prefix="gear-bench-start-", dir="/tmp"))
    bench = Bench(tmp)
    try:
        image = bench.image_path()
        bench.make_datasets()
        bench.warm_up(image)
        anchors, gears = [], []
        for i in range(repeats):
            if i % 2 == 0:
                anchors.append(bench.anchor(image))
                gears.append(bench.gear_run())
            else:
                gears.append(bench.gear_run())
                anchors.append(bench.anchor(image))

        def column(rows: list[dict[str, float]], key: str) -> list[float]:
            return [row[key] for row in rows]

        bare = statistics.median(column(anchors, "start_to_user"))
        ours = statistics.median(column(gears, "start_to_user"))
        print(f"job start -> user command, {repeats} runs, median:")
        print(f"  anchor: bare `apptainer exec --containall {os.path.basename(image)} python3 -c …`:"
              f" {ms(column(anchors, 'start_to_user'))}   (start: the batch script's first line, `date +%s.%N`)")
        print(f"  gear run -d ds1:input0 … -d ds5:input4 -- python3 -c …:  {ms(column(gears, 'start_to_user'))}"
              f"   (start: the batch script's first status record)")
        verdict = "met" if ours - bare < 1.0 else "MISSED"
        print(f"  difference gear - bare: {(ours - bare) * 1000:.0f} ms   | goal < 1000 ms: {verdict}")
        print("cross-check, from Slurm creating the job's output file (one observer for both), median:")
        a_out, g_out = (statistics.median(column(rows, "output_to_user")) for rows in (anchors, gears))
        print(f"  anchor {a_out * 1000:.0f} ms, gear {g_out * 1000:.0f} ms, difference {(g_out - a_out) * 1000:.0f} ms")
        print("where gear's time goes, median:")
        print(f"  first record -> `running` record (mkdir, code and params copied in, env): "
              f"{ms(column(gears, 'syncing'))}")
        print(f"  `running` record -> user command (apptainer with 7 --mount, python start): "
              f"{ms(column(gears, 'running_to_user'))}   | bare apptainer: {bare * 1000:.0f} ms")
        print("submission -> user command (not part of the goal; includes sbatch/gear run and Slurm's scheduling), "
              "median:")
        a_sub, g_sub = (statistics.median(column(rows, "submit_to_user")) for rows in (anchors, gears))
        print(f"  sbatch: {a_sub * 1000:.0f} ms, gear run: {g_sub * 1000:.0f} ms")
    finally:
        bench.cleanup()
        remove_tree(tmp)


if __name__ == "__main__":
    main()
