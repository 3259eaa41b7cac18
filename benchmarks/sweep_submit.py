"""Sweep figures of issue 13, measured inside the local cluster as an ordinary user.

1. Submitting a 1,000-point Grid sweep (`gear run --param n=0,…,999 -- true`:
   1,000 executions, one job array) against its anchor, a loop of 1,000
   `sbatch --wrap true`. The loop is measured on LOOP jobs (default 100) and
   scaled to 1,000 (sbatch's time per job does not grow with the count); both
   are submitted held (`--hold`, and `scontrol hold` for the array right
   after) and cancelled afterwards, so nothing runs. Goal: sweep <= 0.1x loop.
2. `gear status` with those 1,000 array tasks open (pending, held): the Slurm
   calls it makes, counted by a wrapper around squeue/scontrol/sbatch/scancel
   (goal: one), and its median wall time against `gear status` with nothing
   open in the same ledger (goal: <= 2x).

Run it with `bash benchmarks/run sweep_submit.py` (as root; it uses gear
devcluster). Options: `--loop N` (default 100), `--points N` (default 1000).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPEATS = 11


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {result.stderr.strip()}")
    return elapsed, result.stdout


def median(argv: list[str], env: dict[str, str]) -> float:
    return statistics.median(timed(argv, env)[0] for _ in range(REPEATS))


def shims(directory: Path, log: Path) -> dict[str, str]:
    """An environment whose Slurm commands are logged, then run for real (GEAR_SLURM_BIN)."""
    directory.mkdir()
    for name in ("squeue", "scontrol", "sbatch", "scancel"):
        real = shutil.which(name)
        script = directory / name
        script.write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\nexec {real} "$@"\n')
        script.chmod(0o755)
    return {**os.environ, "GEAR_SLURM_BIN": str(directory)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", type=int, default=100)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    # Under the user's home, as a site's storage is: /tmp here is a file system where creating a file
    # costs ten times what it costs in /home or /srv/gear (measured: 1,000 x (mkdir, 2 files, 2 links)
    # in 1.2-3.0 s against 0.1 s), which would be the benchmark's figure rather than gear's.
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        work = Path(tmp)
        rounds = 3
        # Each sweep in a storage root of its own (its own ledger), all held until the end: cancelled
        # arrays stay in slurmctld for MinJobAge with a record per task, and a few of them reach the
        # default MaxJobCount (10,000), after which sbatch waits.
        roots = [work / f"storage{i}" for i in range(rounds)]
        for root in roots:
            (root / "users").mkdir(parents=True)
        code = work / "code"
        code.mkdir()
        (code / "train.py").write_text("print('hi')\n")
        envs = [{**os.environ, "GEAR_STORAGE_ROOT": str(root)} for root in roots]
        env = envs[-1]
        for each in envs:   # the user's ledger exists (made and migrated by a first command), as on any day but the first
            timed(["gear", "status"], each)

        # The anchor: a loop of sbatch --wrap true, held, then cancelled.
        ids = []
        start = time.perf_counter()
        for _ in range(args.loop):
            out = subprocess.run(["sbatch", "--parsable", "--hold", "-p", "cpu", "-t", "1", "-o", "/dev/null",
                                  "--wrap", "true"], capture_output=True, text=True, check=True).stdout
            ids.append(out.strip().split(";")[0])
        loop = time.perf_counter() - start
        subprocess.run(["scancel", *ids], check=True)
        per_job = loop / args.loop

        # A grid of `points` executions as one array (held at once, so nothing runs), three times, the
        # median (the machine is shared; one number would be as noisy as the neighbours).
        import json

        values = ",".join(str(i) for i in range(args.points))
        times = []
        arrays = []
        for each in envs:
            sweep, out = timed(["gear", "run", "-c", "bench-sweep", "--code", str(code), "-r", "cpu-small",
                                "--parallel", "1", "--param", f"n={values}", "--", "python3", "train.py"], each)
            times.append(sweep)
            executions = out.split()
            listed = json.loads(subprocess.run(["gear", "status", "--json"], env=each, capture_output=True,
                                               text=True).stdout)
            arrays.append(listed[0]["slurm_job_id"].split("_")[0])
            subprocess.run(["scontrol", "hold", arrays[-1]], capture_output=True)
        sweep = statistics.median(times)
        array = arrays[-1]
        anchor = per_job * args.points
        print(f"submit a {args.points:,}-point Grid sweep: {sweep:6.3f} s median of {rounds} "
              f"({', '.join(f'{t:.3f}' for t in times)}; {len(executions)} executions, one job array)"
              f"   | anchor {args.points:,} x `sbatch --wrap true`: {anchor:6.2f} s (measured on {args.loop}: "
              f"{per_job * 1000:.1f} ms each, scaled)   | ratio {sweep / anchor:5.3f}x (goal <= 0.1x)")

        # gear status with the last array's tasks open: Slurm calls and time.
        open_count = sum(1 for e in listed if e["status"] in ("queued", "syncing", "running", "saving"))
        log = work / "calls.log"
        counted = shims(work / "bin", log)
        counted["GEAR_STORAGE_ROOT"] = str(roots[-1])
        timed(["gear", "status"], counted)
        calls = [line for line in (log.read_text().splitlines() if log.exists() else [])
                 if line.split(" ", 1)[0] in ("squeue", "scontrol", "sbatch", "scancel")]
        with_open = median(["gear", "status"], env)
        squeue = median(["squeue", "--me", "--states=all"], env)

        # The same ledger once nothing is open: cancel the array, let gear close every task.
        subprocess.run(["scancel", array], check=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            still = [e for e in json.loads(subprocess.run(["gear", "status", "--json"], env=env, capture_output=True,
                                                          text=True).stdout)
                     if e["status"] in ("submitting", "queued", "syncing", "running", "saving")]
            if not still:
                break
            time.sleep(2)
        nothing_open = median(["gear", "status"], env)
        # And with one open execution (held): the click path's own floor, for reading the ratio.
        one = timed(["gear", "run", "-c", "bench-one", "--code", str(code), "-r", "cpu-small", "--", "sleep", "600"],
                    env)[1]
        job = next(e for e in json.loads(subprocess.run(["gear", "status", "--json"], env=env, capture_output=True,
                                                       text=True).stdout) if e["id"] == one.split()[-1])["slurm_job_id"]
        subprocess.run(["scontrol", "hold", job], capture_output=True)
        one_open = median(["gear", "status"], env)
        subprocess.run(["scancel", job, *arrays], check=True)
        names = ", ".join(c.split()[0] for c in calls)
        print(f"gear status, {open_count:,} open array tasks: {len(calls)} Slurm call(s) ({names})"
              f"   | median {with_open * 1000:6.1f} ms   | nothing open (same {args.points:,} rows): "
              f"{nothing_open * 1000:6.1f} ms   | ratio {with_open / nothing_open:4.2f}x (goal <= 2x)"
              f"   | `squeue --me --states=all` alone: {squeue * 1000:5.1f} ms"
              f"   | one open execution: {one_open * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
