"""The cost of one submission (issue 13): `gear sbatch` and `gear run` beside a bare `sbatch`, in one run.

Measured inside the local cluster as the ordinary user `bench`: the wall
time of each command, from spawn to exit, as a workflow tool calling it would
see it. N rounds, each of the three commands once in turn (so load and the
controller's state reach all three alike), after one warm-up round; medians,
and each gear figure as a multiple of the anchor (goal: ≤ 10×). Wall time is
what a caller waits; CPU time (user + system of the command and of what it
runs) is printed beside it because it depends much less on the machine's
load.

- anchor: `sbatch --wrap true`
- `gear sbatch --wrap true` (one execution of container `sbatch`)
- `gear run --code DIR -- true`, DIR a small code directory (three files)
- the same two by the full path (lifecycle.submit, click for gear run): the
  lean path's record (executions/quick_submit.py) removed before each call,
  untimed, as after gear or the site files changed; the first submission of
  a kind costs this

The sbatch jobs are submitted held (`--hold`), gear run's job runs (`true`),
and every job is cancelled at the end. gear uses a fresh storage root (GEAR_STORAGE_ROOT), so its ledger starts
empty. Run it with `bash benchmarks/run submit_cost.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall time and CPU time (user + system, of the command and what it ran) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="submit-cost-"))
    root = tmp / "storage"
    (root / "users").mkdir(parents=True)
    env = {**os.environ, "GEAR_STORAGE_ROOT": str(root)}
    code = tmp / "code"
    code.mkdir()
    for name, text in (("train.py", "print('hi')\n"), ("README", "small code\n"), ("cfg.json", "{}\n")):
        (code / name).write_text(text)
    commands = {
        "sbatch --wrap true": ["sbatch", "--hold", "--wrap", "true"],
        "gear sbatch --wrap true": ["gear", "sbatch", "--hold", "--wrap", "true"],
        "gear run (small code dir)": ["gear", "run", "-c", "cost", "--code", str(code), "--", "true"],
        "gear sbatch, full path": ["gear", "sbatch", "--hold", "--wrap", "true"],
        "gear run, full path": ["gear", "run", "-c", "cost", "--code", str(code), "--", "true"],
    }
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    record = Path(cache) / "gear-hpc" / "submit" / "record.marshal"
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    jobs: list[str] = []
    try:
        for round_number in range(args.repeats + 1):
            for name, argv in commands.items():
                if name.endswith("full path"):
                    record.unlink(missing_ok=True)   # the lean path declines: the full path runs (and records)
                elapsed, used, out = timed(argv, env)
                found = re.search(r"Slurm job (\d+)|batch job (\d+)", out) if "run" not in name else None
                if found:
                    jobs.append(found.group(1) or found.group(2))
                if round_number:   # round 0 warms the caches up
                    times[name].append(elapsed)
                    cpu[name].append(used)
    finally:
        user = pwd.getpwuid(os.getuid()).pw_name
        subprocess.run(["scancel", "-u", user], capture_output=True)
        time.sleep(1)
        shutil.rmtree(tmp, ignore_errors=True)
    anchor = statistics.median(times["sbatch --wrap true"])
    anchor_cpu = statistics.median(cpu["sbatch --wrap true"])
    load = os.getloadavg()[0]
    # CPU time (the command's own, user + system) depends far less on what else runs than wall time.
    print(f"submit_cost: {args.repeats} rounds, medians; wall (min–max) and CPU time; load {load:.2f}")
    for name, values in times.items():
        median, used = statistics.median(values), statistics.median(cpu[name])
        ratio = "anchor" if name.startswith("sbatch") else f"{median / anchor:.1f}×, CPU {used / anchor_cpu:.1f}×"
        print(f"  {name:27s} wall {median * 1000:6.1f} ms ({min(values) * 1000:.1f}–{max(values) * 1000:.1f})"
              f"  CPU {used * 1000:6.1f} ms  {ratio}")


if __name__ == "__main__":
    main()
