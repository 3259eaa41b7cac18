"""Issue figure: what another user shares, listed as fast as one's own `gear ls`.

`gear ls OWNER/` and `gear history OWNER/C` with 1,000 closed executions in
OWNER's shared container, beside the reader's own `gear ls` (a ledger of
1,000 executions) and `python3 -c pass`, all measured in the same run.

The owner here is a second storage directory of the benchmark's own user
(the reader path never checks who owns what it reads: the kernel does), so
the figure is the reader's path exactly: read the indexes, print.

Run it with `bash benchmarks/run shared_listing.py` (as root; it uses gear devcluster).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from startup import GEAR, LIB

COUNT = 1_000
OWNER = "benchowner"
ROUNDS = 31


def fill(root: Path, user: str, count: int, container: str = "c") -> None:
    """`count` closed executions of `container` in `user`'s ledger, as gear records them."""
    from gear_hpc.ledger.db import Ledger
    from gear_hpc.storage.disk import UserStorage

    storage = UserStorage(root, user)
    storage.ensure()
    with Ledger(storage.ledger_path) as ledger, ledger.transaction():
        ledger.ensure_container(container)
        for number in range(1, count + 1):
            ledger.conn.execute(
                "INSERT INTO executions (container, number, mode, status, exit_code, compute_type, image, command,"
                " params, bindings, workdir, token, submitted_at, ended_at, size_bytes, disk_bytes, created_at)"
                " VALUES (?, ?, 'script', 'completed', 0, 'cpu-small', 'python', '[\"python3\", \"train.py\"]',"
                " '{\"lr\": 0.1}', '[]', ?, 't', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 1024, 4096,"
                " '2026-01-01T00:00:00Z')",
                (container, number, str(storage.execution_dir(container, number) / "home")))
    storage.container_dir(container).mkdir(mode=0o700, exist_ok=True)


def share(root: Path, user: str, container: str = "c") -> None:
    from gear_hpc.containers import sharing
    from gear_hpc.ledger.db import Ledger
    from gear_hpc.storage.disk import UserStorage

    storage = UserStorage(root, user)
    os.chmod(storage.root, 0o711)   # as the admin's 2711 (docs/admin.md)
    with Ledger(storage.ledger_path) as ledger:
        sharing.share(ledger, "container", container, "public")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "users").mkdir()
        env = {**os.environ, "GEAR_STORAGE_ROOT": str(root)}
        if not os.path.isdir(LIB) and "GEAR_SITE_CONFIG" not in env:
            env["GEAR_SITE_CONFIG"] = str(Path(__file__).resolve().parents[1] / "site-config")
        fill(root, OWNER, COUNT)
        share(root, OWNER)
        fill(root, os.environ.get("USER") or "bench", COUNT, "mine")   # the reader's own ledger, as large
        commands = {
            "anchor `python3 -c pass`": [sys.executable, "-c", "pass"],
            f"own `gear ls` ({COUNT:,} executions)": GEAR + ["ls"],
            f"own `gear ls --json` ({COUNT:,} executions)": GEAR + ["ls", "--json"],
            f"own `gear history mine` ({COUNT:,} executions)": GEAR + ["history", "mine"],
            f"`gear ls {OWNER}/` ({COUNT:,} closed)": GEAR + ["ls", f"{OWNER}/"],
            f"`gear ls {OWNER}/ --json`": GEAR + ["ls", f"{OWNER}/", "--json"],
            f"`gear history {OWNER}/c` ({COUNT:,} closed)": GEAR + ["history", f"{OWNER}/c"],
        }
        # Interleaved, round by round: the machine is shared, and a burst of load
        # then falls on every command alike instead of on whichever ran during it.
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(ROUNDS):
            for name, argv in commands.items():
                start = time.perf_counter()
                subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - start)
        median = {name: statistics.median(values) for name, values in times.items()}
        anchor, own = list(median.values())[:2]
        for name, figure in median.items():
            print(f"{name:<52} median {figure * 1000:6.1f} ms   | {figure / anchor:4.2f}x the anchor, "
                  f"{figure / own:4.2f}x own `gear ls`")
        print(f"({ROUNDS} rounds; goal: another user's listings as fast as one's own `gear ls`, <= 1x)")


if __name__ == "__main__":
    where = "inside the local cluster" if os.path.isdir(LIB) else f"on this host ({sys.executable})"
    print(f"python {sys.version.split()[0]} {where}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    main()
