"""Storage figures on the cluster: gear du / ls / show / delete against `du -s` and `df` (docs/design.md).

A run writes 20,000 small files, a continuation shares them (hard links)
and adds 20,000 more: apparent sizes say ~200 KiB, the disk holds ~160 MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import User

WRITE = "import os\nfor i in range(20000):\n    open(f'{PREFIX}{i}', 'w').write('x')\n"


@pytest.fixture(scope="module")
def sizeuser() -> User:
    return User("sizeuser1")


def du_bytes(path: os.PathLike[str] | str) -> int:
    """`du -s -B1` as root on the host (the same directory the cluster sees)."""
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def df_used(path: os.PathLike[str] | str) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


def close(a: int, b: int, tolerance: float = 0.05) -> bool:
    return abs(a - b) <= tolerance * max(a, b)


def test_gear_reports_what_the_disk_holds(sizeuser):
    container = f"sz-{uuid.uuid4().hex[:8]}"
    code = sizeuser.make_dir({"first.py": WRITE.replace("{PREFIX}", "a"), "second.py": WRITE.replace("{PREFIX}", "b")})
    first = sizeuser.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "first.py",
                          timeout=900)
    assert first.returncode == 0, first.stderr
    second = sizeuser.gear("continue", f"{container}/1", "-f", "--", "python3", "second.py", timeout=900)
    assert second.returncode == 0, second.stderr
    one, two = sizeuser.gear_json("show", f"{container}/1"), sizeuser.gear_json("show", f"{container}/2")
    assert one["status"] == two["status"] == "completed"

    root = sizeuser.storage / "containers" / container
    on_disk = du_bytes(root)
    assert on_disk > 20 * 2**20                        # 40,000 one-byte files: far more than their 40 KB
    # gear show --json: each execution's blocks that no earlier one holds; together, du -s.
    assert close(one["disk_bytes"], du_bytes(root / "1"))
    assert close(two["disk_bytes"], on_disk - du_bytes(root / "1"))
    assert close(one["disk_bytes"] + two["disk_bytes"], on_disk)
    assert one["size_bytes"] < 100_000 and two["size_bytes"] < 100_000    # the apparent sizes stay
    # gear ls and gear du.
    [listed] = [c for c in sizeuser.gear_json("ls") if c["name"] == container]
    assert close(listed["disk_bytes"], on_disk), (listed, on_disk)
    usage = sizeuser.gear_json("du")
    assert close(usage["disk"]["containers"][container], on_disk)
    table = sizeuser.gear("du", check=True).stdout
    assert any(container in line and "MiB" in line for line in table.splitlines()), table

    # gear delete: what it says it freed is what du said, and what df sees go.
    before_du, before_df = du_bytes(root), df_used(root.parent)
    result = sizeuser.gear("delete", container, "--yes", "--json", check=True)
    report = json.loads(result.stdout)
    # ext4 gives freed blocks back at its next journal commit (every 5 s): wait for df to settle.
    after_df = df_used(root.parent)
    for _ in range(15):
        os.sync()
        time.sleep(1)
        now = df_used(root.parent)
        if abs(now - after_df) < 2**20:
            break
        after_df = now
    assert not root.exists()
    print("du before delete", before_du, "df change", before_df - after_df, "freed", report["freed_disk_bytes"])
    assert close(report["freed_disk_bytes"], before_du), (report["freed_disk_bytes"], before_du)
    assert close(report["frees_disk_bytes"], before_du)
    # df within 5% too (sealing keeps one short attribute, inside the inode: no block du
    # would count and df would not), give or take a MiB of whatever else wrote meanwhile.
    freed_df = before_df - after_df
    assert abs(freed_df - report["freed_disk_bytes"]) <= 0.05 * report["freed_disk_bytes"] + 2**20, \
        (freed_df, report)
