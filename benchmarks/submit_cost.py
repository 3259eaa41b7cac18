"""The cost of one submission (issue 13): `gear sbatch` and `gear run` beside a bare `sbatch`, in one run.

Measured inside the local cluster as the ordinary user `bench`: the wall
time of each command, from spawn to exit, as a workflow tool calling it would
see it. N rounds, each of the three commands once in turn (so load and the
controller's state reach all three alike), after one warm-up round; medians,
and each gear figure as a multiple of the anchor (goal: ≤ 10×).

- anchor: `sbatch --wrap true`
- `gear sbatch --wrap true` (one execution of container `sbatch`)
- `gear run --code DIR -- true`, DIR a small code directory (three files)

Every job is submitted held (`--hold`; gear run's job is held right after
with `scontrol hold`? no: it runs, as it would) and all are cancelled at the
end. gear uses a fresh storage root (GEAR_STORAGE_ROOT), so its ledger starts
empty. Run it with `bash benchmarks/run submit_cost.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed, result.stdout


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
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    jobs: list[str] = []
    try:
        for round_number in range(args.repeats + 1):
            for name, argv in commands.items():
                elapsed, out = timed(argv, env)
                found = re.search(r"Slurm job (\d+)|batch job (\d+)", out) if "run" not in name else None
                if found:
                    jobs.append(found.group(1) or found.group(2))
                if round_number:   # round 0 warms the caches up
                    times[name].append(elapsed)
    finally:
        user = pwd.getpwuid(os.getuid()).pw_name
        subprocess.run(["scancel", "-u", user], capture_output=True)
        time.sleep(1)
        shutil.rmtree(tmp, ignore_errors=True)
    anchor = statistics.median(times["sbatch --wrap true"])
    load = os.getloadavg()[0]
    print(f"submit_cost: {args.repeats} rounds, medians (min–max), load {load:.2f}")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = "anchor" if name.startswith("sbatch") else f"{median / anchor:.1f}×"
        print(f"  {name:28s} {median * 1000:7.1f} ms  ({min(values) * 1000:.1f}–{max(values) * 1000:.1f})  {ratio}")


if __name__ == "__main__":
    main()
