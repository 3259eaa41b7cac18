"""`gear data upload` on the real local cluster, as alice: read-only versions, totals, resuming."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def dataset(alice) -> str:
    name = f"u-{uuid.uuid4().hex[:8]}"
    alice.gear("data", "create", name, check=True)
    return name


def _version(alice, dataset: str, number: int) -> Path:
    return alice.storage / "datasets" / dataset / "versions" / str(number)


def _writable(root: Path) -> list[str]:
    """Everything at or below `root` (never following a symlink) that still has a write bit."""
    return [str(p.relative_to(root)) for p in [root, *root.rglob("*")]
            if not p.is_symlink() and p.lstat().st_mode & 0o222]


def _totals(alice, dataset: str) -> list[tuple[int, int, int]]:
    return [(v["version"], v["files"], v["size_bytes"]) for v in alice.gear_json("data", "versions", dataset)]


def test_a_closed_version_is_read_only_throughout(alice, dataset):
    source = alice.make_dir({"a.txt": "a", "sub/b.txt": "bb", "sub/deeper/c.txt": "ccc", "empty/.keep": ""})
    alice.gear("data", "upload", dataset, str(source), check=True)
    v1 = _version(alice, dataset, 1)
    assert _writable(v1) == []
    assert _totals(alice, dataset) == [(1, 4, 6)]
    for command in (f"touch {v1}/sub/deeper/new", f"mkdir {v1}/empty/x", f"rm {v1}/sub/b.txt",
                    f"echo x >> {v1}/sub/deeper/c.txt"):
        denied = alice.run("bash", "-c", command)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, command


def test_several_paths_have_the_totals_of_the_whole_version(alice, dataset):
    base = alice.make_dir({"one.csv": "1", "dir/two.csv": "22", "dir/sub/three.csv": "333",
                           "other/four.csv": "4444", "a/x.csv": "5", "b/x.csv": "6"})
    result = alice.gear("data", "upload", dataset, str(base / "one.csv"), str(base / "dir"), str(base / "other"))
    assert result.returncode == 0, result.stderr
    assert f"{dataset}@1: 4 files, 10 B" in result.stdout
    assert _totals(alice, dataset) == [(1, 4, 10)]
    assert _writable(_version(alice, dataset, 1)) == []
    clash = alice.gear("data", "upload", dataset, str(base / "a" / "x.csv"), str(base / "b" / "x.csv"))
    assert clash.returncode != 0 and "same name (x.csv)" in clash.stderr
    assert len(_totals(alice, dataset)) == 1


def test_a_failed_upload_then_a_rerun_gives_the_whole_version(alice, dataset):
    """rsync stops with exit 23 (an unreadable file); the rerun resumes into the read-only partial copy."""
    source = alice.make_dir({f"d{d}/f{i}.txt": "x" * (d + 1) for d in range(3) for i in range(10)})
    (source / "d2" / "f9.txt").chmod(0)
    failed = alice.gear("data", "upload", dataset, str(source))
    assert failed.returncode != 0 and "some files could not be copied" in failed.stderr
    assert _totals(alice, dataset) == []
    (source / "d2" / "f9.txt").chmod(0o644)
    result = alice.gear("data", "upload", dataset, str(source), check=True)
    assert f"{dataset}@1: 30 files" in result.stdout
    assert _totals(alice, dataset) == [(1, 30, 10 * (1 + 2 + 3))]
    assert _writable(_version(alice, dataset, 1)) == []
    assert list((alice.storage / "datasets" / dataset / "incoming").iterdir()) == []


def test_an_interrupted_upload_then_a_rerun_gives_the_whole_version(alice, dataset):
    """Ctrl-C (SIGINT to gear and its rsync) in the middle of a big file, then the same command again.

    The interrupted run's rsync is slowed to 8 MB/s (a wrapper first on PATH),
    so the signal surely comes after the small files (a/, copied first: rsync
    sorts the names) and in the middle of zz/big.bin.
    """
    source = alice.make_dir({f"a/f{i}.txt": "y" * 100 for i in range(50)})
    (source / "zz").mkdir()
    big = source / "zz" / "big.bin"
    big.write_bytes(os.urandom(48 << 20))
    slow = alice.make_dir({"rsync": '#!/bin/sh\nexec /usr/bin/rsync --bwlimit=8000 "$@"\n'})
    (slow / "rsync").chmod(0o755)
    for path in (source / "zz", big, slow / "rsync"):
        os.chown(path, alice.pw.pw_uid, alice.pw.pw_gid)
    interrupted = alice.run("bash", "-c", f'PATH={slow}:$PATH exec timeout -s INT 2 gear data upload {dataset} {source}')
    assert interrupted.returncode != 0 and "aborted" in interrupted.stderr, interrupted.stderr
    assert _totals(alice, dataset) == []
    incoming = alice.storage / "datasets" / dataset / "incoming"
    arrived = {p.name: p.stat() for p in incoming.rglob("f*.txt")}
    assert len(arrived) == 50 and not any(s.st_mode & 0o222 for s in arrived.values())
    result = alice.gear("data", "upload", dataset, str(source), check=True)
    assert f"{dataset}@1: 51 files, 48.0 MiB" in result.stdout
    assert _totals(alice, dataset) == [(1, 51, (48 << 20) + 50 * 100)]
    v1 = _version(alice, dataset, 1)
    assert _writable(v1) == []
    assert (v1 / "zz" / "big.bin").read_bytes() == big.read_bytes()
    # The rerun kept what had arrived (same inodes: not copied again).
    assert {p.name: p.stat().st_ino for p in (v1 / "a").iterdir()} == {n: s.st_ino for n, s in arrived.items()}
    assert list(incoming.iterdir()) == []
