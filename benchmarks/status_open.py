"""`gear status` with open executions beside `squeue --me` (issue 13: goal <= 3x), measured inside the local cluster.

As the ordinary user `bench`, against a fresh storage root: OPEN executions
(default 50) are submitted held (`gear sbatch --hold --wrap 'sleep 600'`),
so they stay queued and nothing runs. Then ROUNDS interleaved rounds of
`squeue --me` (the anchor), `gear status` and `python3 -c pass` (the
interpreter's own start, for reading the figure); medians, and the Slurm calls
one `gear status` makes (counted by wrappers around the real commands named
in GEAR_SLURM_BIN). Every job is cancelled at the end.

Run it with `bash benchmarks/run status_open.py [--open N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--open", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        work = Path(tmp)
        root = work / "storage"
        (root / "users").mkdir(parents=True)
        env = {**os.environ, "GEAR_STORAGE_ROOT": str(root)}
        code = work / "code"
        code.mkdir()
        (code / "train.py").write_text("print('hi')\n")
        jobs = []
        try:
            for _ in range(args.open):
                # Held from the start (sbatch --hold): none runs, so no container starts load the machine.
                subprocess.run(["gear", "sbatch", "--hold", "--wrap", "sleep 600"], env=env, cwd=code,
                               capture_output=True, check=True)
            listed = json.loads(subprocess.run(["gear", "status", "--json"], env=env, capture_output=True,
                                               text=True, check=True).stdout)
            jobs = [e["slurm_job_id"] for e in listed]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                statuses = [e["status"] for e in json.loads(subprocess.run(
                    ["gear", "status", "--json"], env=env, capture_output=True, text=True, check=True).stdout)]
                if all(s in ("queued", "running") for s in statuses):
                    break
                time.sleep(1)
            open_count = sum(s in ("queued", "syncing", "running", "saving") for s in statuses)

            log = work / "calls.log"
            counted = {**env, "GEAR_SLURM_BIN": str(work / "bin")}
            (work / "bin").mkdir()
            for name in ("squeue", "scontrol", "sbatch", "scancel"):
                script = work / "bin" / name
                script.write_text(f'#!/bin/bash\necho "{name}" >> {log}\nexec {shutil.which(name)} "$@"\n')
                script.chmod(0o755)
            timed(["gear", "status"], counted)
            calls = log.read_text().split() if log.exists() else []

            commands = {"squeue --me": ["squeue", "--me"], "gear status": ["gear", "status"],
                        "python3 -c pass": ["python3", "-c", "pass"]}
            times: dict[str, list[float]] = {name: [] for name in commands}
            for round_number in range(args.rounds + 1):
                for name, argv in commands.items():
                    elapsed = timed(argv, env)
                    if round_number:   # round 0 warms the caches up
                        times[name].append(elapsed)
        finally:
            if jobs:
                subprocess.run(["scancel", *jobs], capture_output=True)
    anchor = statistics.median(times["squeue --me"])
    print(f"status_open: {open_count} open executions (queued, held), {args.rounds} interleaved rounds, medians; "
          f"load {os.getloadavg()[0]:.2f}; one gear status made {len(calls)} Slurm call(s) ({', '.join(calls)})")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = "anchor" if name == "squeue --me" else f"{median / anchor:.2f}x"
        print(f"  {name:16s} {median * 1000:6.1f} ms (min {min(values) * 1000:.1f})  {ratio}"
              + ("  (goal <= 3x)" if name == "gear status" else ""))


if __name__ == "__main__":
    main()
