"""Two trees of gear side by side: `gear ls` / `gear status` (the fast path) with 10,000 executions.

For a change that may cost start-up time (a restructure), the figure that
tells is the two trees measured in one run, interleaved, against the same
ledger, with `python3 -c pass` as the anchor: single runs minutes apart differ
by more than the change. Each tree gets its own cache directory (its own
site record), so each takes its own fast path.

    git archive BEFORE gear_hpc site-config | tar -x -C /tmp/fp/before    # and AFTER into /tmp/fp/after
    bash benchmarks/run fastpath_compare.py /tmp/fp/before /tmp/fp/after [--rounds 41]

The ledger is filled with the second tree's code (both must read its schema).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="a directory holding the first tree's gear_hpc/")
    parser.add_argument("after", type=Path, help="a directory holding the second tree's gear_hpc/")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "storage"
        (root / "users").mkdir(parents=True)
        sys.path.insert(0, str(trees["after"]))
        from startup import fill_ledger  # the same 10,000 rows as startup.py

        fill_ledger(root, 10_000)
        envs = {}
        for name, tree in trees.items():
            env = {**os.environ, "GEAR_STORAGE_ROOT": str(root), "PYTHONPATH": str(tree),
                   "XDG_CACHE_HOME": str(Path(tmp) / f"cache-{name}")}
            if (tree / "site-config").is_dir():   # a tree may need the site files of its own time
                env["GEAR_SITE_CONFIG"] = str(tree / "site-config")
            # One click-path run validates the site and writes this tree's record: the fast path from then on.
            subprocess.run([sys.executable, "-m", "gear_hpc.cli", "ls"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            envs[name] = env
        times: dict[str, list[float]] = {"anchor": []}
        for _ in range(args.rounds):
            times["anchor"].append(timed([sys.executable, "-c", "pass"], os.environ.copy()))
            for name in trees:
                for command in ("ls", "status"):
                    key = f"{name} {command}"
                    times.setdefault(key, []).append(timed([sys.executable, "-m", "gear_hpc.cli", command],
                                                           envs[name]))
        anchor = statistics.median(times["anchor"])
        print(f"python {sys.version.split()[0]}, {args.rounds} interleaved rounds, load {os.getloadavg()[0]:.2f}")
        print(f"anchor `python3 -c pass`: median {anchor * 1000:.1f} ms")
        for key, values in times.items():
            if key == "anchor":
                continue
            median = statistics.median(values)
            print(f"{key:<14} median {median * 1000:5.1f} ms ({median / anchor:.2f}x), min {min(values) * 1000:5.1f} ms")


if __name__ == "__main__":
    main()
