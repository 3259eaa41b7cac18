"""Storage figures: what the disk holds (blocks, hard links once, links not followed), as `du` counts.

The reference is GNU `du -s -B1` itself, run on the same trees.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from gear_hpc.base.sizes import human_rate
from gear_hpc.cli.listing import status_text
from gear_hpc.containers import delete as containers, plan as plans, usage as container_usage
from gear_hpc.data import staging
from gear_hpc.executions import open_fold
from gear_hpc.ledger.db import Ledger, utc_now
from gear_hpc.storage.disk import UserStorage, execution_usage, usage


def du(*paths: Path) -> int:
    """`du -s -B1 PATH…`: each hard-linked file once, across all of them."""
    out = subprocess.run(["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def small_files(directory: Path, count: int, prefix: str = "f") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"{prefix}{i}").write_text("x")


def test_blocks_not_bytes(tmp_path):
    small_files(tmp_path / "t", 300)
    found = usage(tmp_path / "t")
    assert found.apparent == 300 and found.files == 300
    assert found.disk == du(tmp_path / "t")
    assert found.disk >= 300 * 512          # each 1-byte file takes a block of its own


def test_hard_links_count_once(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "big").write_bytes(os.urandom(200_000))
    for i in range(5):
        os.link(tree / "big", tree / f"link{i}")
    found = usage(tree)
    assert found.apparent == 200_000 and found.files == 6
    assert found.disk == du(tree) < 2 * 200_000


def test_symlinks_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "huge").write_bytes(os.urandom(500_000))
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "to-file").symlink_to(outside / "huge")
    (tree / "to-dir").symlink_to(outside)
    found = usage(tree)
    assert found.disk == du(tree) < 100_000
    assert found.files == 2


def test_a_shared_seen_set_counts_an_inode_in_the_first_tree_only(tmp_path):
    small_files(tmp_path / "a", 50)
    (tmp_path / "b").mkdir()
    for name in os.listdir(tmp_path / "a"):
        os.link(tmp_path / "a" / name, tmp_path / "b" / name)
    seen: set[tuple[int, int]] = set()
    first, second = usage(tmp_path / "a", seen), usage(tmp_path / "b", seen)
    assert first.disk + second.disk == du(tmp_path / "a", tmp_path / "b")
    assert second.disk == os.lstat(tmp_path / "b").st_blocks * 512   # only its own directory is new
    assert second.files == 50 and second.apparent == 0


def continuation(container: Path) -> None:
    """C/1 with 2,000 small files; C/2 hard-links them all (gear continue), changes 100, adds 300."""
    small_files(container / "1" / "home", 2000)
    (container / "1" / "output.log").write_text("log\n")
    (container / "2").mkdir()
    subprocess.run(["cp", "-al", str(container / "1" / "home"), str(container / "2" / "home")], check=True)
    for i in range(100):
        target = container / "2" / "home" / f"f{i}"
        target.unlink()
        target.write_text("changed")
    small_files(container / "2" / "home", 300, prefix="new")
    (container / "2" / "output.log").write_text("log\n")


def test_a_continuation_counts_only_what_its_parent_does_not_hold(tmp_path):
    container = tmp_path / "C"
    continuation(container)
    one, two = execution_usage(container / "1"), execution_usage(container / "2")
    assert one.disk == du(container / "1")                    # the first holds all it has
    assert two.disk == du(container / "1", container / "2") - du(container / "1")   # only what is new
    assert two.disk < one.disk / 3
    # The executions' figures add up to `du -s` of the container (less the container's own directory).
    assert one.disk + two.disk + os.lstat(container).st_blocks * 512 == du(container)
    # Links made inside one execution are its own.
    os.link(container / "2" / "home" / "new0", container / "2" / "home" / "again")
    assert execution_usage(container / "2").disk == two.disk


def test_delete_plan_and_result_are_what_du_said(gear_env):
    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    with Ledger(storage.ledger_path) as ledger:
        for _ in (1, 2):
            ledger.allocate_execution("c", lambda n: storage.execution_dir("c", n) / "home", mode="script",
                                      status="completed", compute_type="cpu-small", image="python",
                                      command=["true"], params={}, bindings=[], token="t", ended_at=utc_now())
        continuation(storage.container_dir("c"))
        before = du(storage.container_dir("c"))
        plan = plans.plan_delete(ledger, storage, "c", query=lambda: {})
        assert plan.disk_bytes == plan.frees_disk_bytes == before
        figures = {e.number: e.disk_bytes for e in plan.executions}
        assert figures[2] == execution_usage(storage.execution_dir("c", 2)).disk
        # The ledger's figures (recorded as an execution closes, or by `gear du` for older ones).
        assert container_usage.measure_unmeasured(ledger) == 2
        [summary] = ledger.container_summaries()
        assert abs(summary["disk_bytes"] - before) <= 8192                   # the container's own directory
        result = containers.delete(ledger, storage, plan)
    assert result.freed_disk_bytes == before
    assert result.freed_bytes < before / 10                                 # the apparent size hides it


def test_status_never_reads_zero_mb_per_second_while_files_move(gear_env):
    # 2,400 files of 16 bytes a second: 38 KB/s.
    record = {"phase": "saving", "progress": {"bytes": 384_000, "percent": 30, "files": 24_000,
                                              "files_total": 80_000, "seconds": 10}}
    progress = open_fold.progress(record)
    item = {"id": "c/1", "status": "saving", "exit_code": None, "compute_type": "cpu", "image": "python",
            "slurm_job_id": "1", "submitted_at": None, "ended_at": None, "size_bytes": None, "disk_bytes": None,
            "message": None, "note": None, "progress": progress}
    text = status_text([item], as_json=False)
    assert "0.0 MB/s" not in text
    assert "38 KB/s, 2,400 files/s" in text, text
    assert human_rate(3_200_000) == "3.2 MB/s" and human_rate(300) == "300 B/s"


def test_the_job_reports_blocks_it_alone_holds(gear_env, tmp_path):
    """The batch script's report (set_job_extra, templates/lib/report.sh): the disk figure of the saved
    working directory, never fatal."""
    from helpers import write_executable
    from test_render import _source

    container = tmp_path / "C"
    continuation(container)
    calls = tmp_path / "scontrol.args"
    (tmp_path / "bin").mkdir()
    write_executable(tmp_path / "bin" / "scontrol", f"#!/bin/bash\nprintf '%s\\n' \"$@\" > {calls}\n")
    harness = tmp_path / "report.sh"
    harness.write_text(f"home={container / '2' / 'home'}\n" + _source("report.sh")
                       + "set_job_extra 'Extra=gear;status=completed;exit=0;saved=true'\n")
    subprocess.run(["bash", str(harness)], check=True,
                   env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    size = int(calls.read_text().split("size=")[1].split()[0])
    assert size == du(container / "1", container / "2" / "home") - du(container / "1")


def test_an_upload_counts_files_not_directories(tmp_path):
    source = tmp_path / "src"
    small_files(source, 30)
    small_files(source / "sub", 4)
    reports: list[staging.Progress] = []
    last, stats = staging.rsync_with_progress([f"{source}/"], f"{tmp_path / 'dst'}/", reports.append)
    assert (last.files_done, last.files_total) == (34, 34) == (reports[-1].files_done, reports[-1].files_total)
    assert stats is not None and stats.totals() == (34, 34)


def test_status_json_keeps_its_fields(gear_env):
    record = {"phase": "syncing", "progress": {"bytes": 41_000, "seconds": 1}}
    assert json.loads(json.dumps(open_fold.progress(record)))["mb_per_s"] == 0.041
