"""Login-node figures of issue 2, measured inside the local cluster as an ordinary user.

1. `gear ls` and `gear status` with 10,000 executions in the ledger: median
   wall time, beside `python3 -c pass` measured in the same run (goal: 1.5x).
2. Slurm calls made by one `gear status` with 100 open executions (goal: 1),
   counted by a wrapper around the real squeue/sbatch/scancel.

Run it with `bash benchmarks/run startup.py` (as root; it uses gear devcluster), or
on the host with `.venv/bin/python benchmarks/startup.py --no-slurm` (the host's
Slurm commands cannot talk to the cluster's controller, so only the first figure).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIB = "/opt/gear-hpc/lib"  # gear as installed in the local cluster
if os.path.isdir(LIB):
    sys.path.insert(0, LIB)
# `gear` as users run it: the cluster's wrapper inside, this interpreter's module outside.
GEAR = ["gear"] if os.path.isdir(LIB) else [sys.executable, "-m", "gear_hpc.cli"]

REPEATS = 21


def median_seconds(argv: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fill_ledger(storage_root: Path, count: int) -> None:
    from gear_hpc.ledger.db import Ledger
    from gear_hpc.storage.disk import UserStorage

    storage = UserStorage(storage_root)
    storage.ensure()
    with Ledger(storage.ledger_path) as ledger, ledger.transaction():
        for i in range(count):
            container = f"c{i // 100:03d}"
            ledger.ensure_container(container)
            ledger.conn.execute(
                "INSERT INTO executions (container, number, mode, status, exit_code, compute_type, image, command,"
                " params, bindings, workdir, token, submitted_at, ended_at, size_bytes, created_at)"
                " VALUES (?, ?, 'script', 'completed', 0, 'cpu-small', 'python', '[\"true\"]', '{}', '[]', ?, 't',"
                " '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 1024, '2026-01-01T00:00:00Z')",
                (container, i % 100 + 1, f"/nonexistent/{i}"))


def startup_figures() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "users").mkdir()
        env = {**os.environ, "GEAR_STORAGE_ROOT": str(root)}
        if not os.path.isdir(LIB) and "GEAR_SITE_CONFIG" not in env:
            env["GEAR_SITE_CONFIG"] = str(Path(__file__).resolve().parents[1] / "site-config")
        fill_ledger(root, 10_000)
        anchor = median_seconds([sys.executable, "-c", "pass"], env)
        for command in (["ls"], ["status"]):
            figure = median_seconds(GEAR + command, env)
            print(f"gear {command[0]:<7} 10,000 executions: median {figure * 1000:6.1f} ms"
                  f"   | anchor `python3 -c pass`: {anchor * 1000:6.1f} ms"
                  f"   | ratio {figure / anchor:4.2f}x (goal <= 1.5x)")


def slurm_call_count(open_count: int = 100) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, shims = Path(tmp) / "storage", Path(tmp) / "bin"
        (root / "users").mkdir(parents=True)
        shims.mkdir()
        log = Path(tmp) / "calls.log"
        for name in ("sbatch", "squeue", "scancel"):
            shim = shims / name
            shim.write_text(f"#!/bin/sh\necho {name} >> {log}\nexec /usr/bin/{name} \"$@\"\n")
            shim.chmod(0o755)
        code = Path(tmp) / "code"
        code.mkdir()
        env = {**os.environ, "GEAR_STORAGE_ROOT": str(root), "GEAR_SLURM_BIN": str(shims)}
        ids = []
        for _ in range(open_count):
            out = subprocess.run(["gear", "run", "-c", "bench", "--code", str(code), "--", "sleep", "600"],
                                 env=env, capture_output=True, text=True, check=True).stdout
            ids.append(out.strip().splitlines()[-1])
        log.write_text("")
        start = time.perf_counter()
        statuses = json.loads(subprocess.run(["gear", "status", "--json"], env=env, capture_output=True,
                                             text=True, check=True).stdout)
        elapsed = time.perf_counter() - start
        calls = [line for line in log.read_text().splitlines() if line]
        open_now = sum(1 for s in statuses if s["status"] in ("queued", "syncing", "running"))
        print(f"gear status with {open_now} open executions: {len(calls)} Slurm call(s) ({', '.join(calls)}),"
              f" {elapsed * 1000:.0f} ms   | goal: 1 call")
        subprocess.run(["scancel", "--me"], check=False)  # the bench user has no other jobs
        # The stopped jobs still save into the temporary storage root: let them
        # finish before it is removed, or the removal races their writes.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and subprocess.run(
                ["squeue", "--me", "-h", "-o", "%i"], capture_output=True, text=True).stdout.strip():
            time.sleep(1)


if __name__ == "__main__":
    where = "inside the local cluster" if os.path.isdir(LIB) else f"on this host ({sys.executable})"
    print(f"python {sys.version.split()[0]} {where}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    startup_figures()
    if "--no-slurm" not in sys.argv:
        slurm_call_count()
