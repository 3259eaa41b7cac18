"""Dataset versions on a local file system (no cluster needed)."""

import os
from pathlib import Path

import pytest

from gear_hpc.base.errors import GearError, UsageError
from gear_hpc.data import datasets, staging
from gear_hpc.ledger.db import Ledger
from gear_hpc.storage.disk import UserStorage


@pytest.fixture
def user(gear_env):
    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    with Ledger(storage.ledger_path) as ledger:
        datasets.create(ledger, storage, "mnist")
        yield ledger, storage


def _tree(base: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (base / relative).parent.mkdir(parents=True, exist_ok=True)
        (base / relative).write_text(text)
    return base


def _writable(root: Path) -> list[str]:
    """Everything at or below `root` (never following a symlink) that still has a write bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink() and path.lstat().st_mode & 0o222:
            found.append(str(path.relative_to(root)))
    return found


def test_upload_makes_a_read_only_version(user, tmp_path):
    ledger, storage = user
    source = _tree(tmp_path / "src", {"a.txt": "a", "sub/b.txt": "bb", "sub/deeper/c.txt": "ccc"})
    seen = []
    version, progress = datasets.upload(ledger, storage, "mnist", [source], on_progress=seen.append)
    assert version == 1 and progress.bytes_done == 6 and seen
    assert seen[-1] == progress and progress.percent == 100
    target = storage.version_dir("mnist", 1)
    assert (target / "sub" / "b.txt").read_text() == "bb"
    assert _writable(target) == []  # files and directories, the top included
    if os.geteuid() != 0:  # root ignores permissions; the cluster tests check as alice
        with pytest.raises(PermissionError):
            (target / "a.txt").write_text("changed")
    assert [(v["files"], v["size_bytes"]) for v in ledger.versions("mnist")] == [(3, 6)]
    assert list((storage.dataset_dir("mnist") / "incoming").iterdir()) == []


def test_upload_takes_its_totals_from_the_copy(user, tmp_path, monkeypatch):
    ledger, storage = user
    source = _tree(tmp_path / "src", {"a.txt": "a" * 10, "sub/b.txt": "b" * 20})

    def no_walk(path):
        raise AssertionError("a tree of plain files is counted by rsync, not walked again")

    monkeypatch.setattr(datasets, "_count", no_walk)
    datasets.upload(ledger, storage, "mnist", [source])
    assert [(v["files"], v["size_bytes"]) for v in ledger.versions("mnist")] == [(2, 30)]


def test_several_paths_keep_their_names(user, tmp_path):
    ledger, storage = user
    _tree(tmp_path, {"one.csv": "1", "dir/two.csv": "22", "dir/sub/three.csv": "333", "other/four.csv": "4444"})
    seen = []
    datasets.upload(ledger, storage, "mnist", [tmp_path / "one.csv", tmp_path / "dir", tmp_path / "other"],
                    on_progress=seen.append)
    target = storage.version_dir("mnist", 1)
    assert (target / "one.csv").exists() and (target / "dir" / "sub" / "three.csv").exists()
    assert (target / "other" / "four.csv").exists()
    assert [(v["files"], v["size_bytes"]) for v in ledger.versions("mnist")] == [(4, 10)]
    assert seen[-1].bytes_done == 10  # one copy for all paths: one progress, to the end
    assert _writable(target) == []


def test_several_paths_with_the_same_name_are_refused(user, tmp_path):
    ledger, storage = user
    _tree(tmp_path, {"a/x.csv": "1", "b/x.csv": "2"})
    with pytest.raises(UsageError, match=r"same name \(x.csv\)"):
        datasets.upload(ledger, storage, "mnist", [tmp_path / "a" / "x.csv", tmp_path / "b" / "x.csv"])
    assert ledger.versions("mnist") == []


def test_an_interrupted_upload_makes_no_version_and_a_rerun_resumes(user, tmp_path, monkeypatch):
    ledger, storage = user
    source = _tree(tmp_path / "src", {f"f{i}.txt": "x" * 100 for i in range(5)})
    real = staging.rsync_with_progress

    def interrupted(sources, target, on_progress, *options):
        # The copy gets one file across, then the connection drops.
        Path(target, "f0.txt").write_text("x" * 100)
        raise GearError("copy failed: interrupted by a signal")

    monkeypatch.setattr(staging, "rsync_with_progress", interrupted)
    with pytest.raises(GearError):
        datasets.upload(ledger, storage, "mnist", [source])
    assert ledger.versions("mnist") == []
    assert not (storage.dataset_dir("mnist") / "versions" / "1").exists()
    monkeypatch.setattr(staging, "rsync_with_progress", real)
    version, progress = datasets.upload(ledger, storage, "mnist", [source])
    assert version == 1 and len(list(storage.version_dir("mnist", 1).iterdir())) == 5
    assert progress.files_total == 5  # the files, as the version records them (not rsync's count with the directory)
    assert progress.bytes_done == 400  # f0.txt had arrived: only the rest was sent
    # ...but the version's totals are those of the whole version.
    assert [(v["files"], v["size_bytes"]) for v in ledger.versions("mnist")] == [(5, 500)]
    assert _writable(storage.version_dir("mnist", 1)) == []


def test_a_rerun_resumes_into_a_read_only_partial_copy(user, tmp_path):
    """A real rsync that failed half-way (one unreadable file) left read-only files and directories."""
    ledger, storage = user
    source = _tree(tmp_path / "src", {"a/one.txt": "1", "a/two.txt": "22", "b/three.txt": "333"})
    if os.geteuid() == 0:
        pytest.skip("root reads an unreadable file; the cluster tests run this as alice")
    (source / "b" / "three.txt").chmod(0)
    with pytest.raises(GearError, match="some files could not be copied"):
        datasets.upload(ledger, storage, "mnist", [source])
    assert ledger.versions("mnist") == []
    (source / "b" / "three.txt").chmod(0o644)
    (source / "a" / "two.txt").unlink()  # changed meanwhile: the version is the source as it is now
    datasets.upload(ledger, storage, "mnist", [source])
    target = storage.version_dir("mnist", 1)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*.txt")) == ["a/one.txt", "b/three.txt"]
    assert [(v["files"], v["size_bytes"]) for v in ledger.versions("mnist")] == [(2, 4)]
    assert _writable(target) == []


def test_a_version_directory_left_by_a_crash_is_not_a_version(user, tmp_path):
    ledger, storage = user
    stale = storage.version_dir("mnist", 1)
    stale.mkdir(parents=True)
    (stale / "junk").write_text("half")
    datasets.upload(ledger, storage, "mnist", [_tree(tmp_path / "s", {"a": "1"})])
    assert sorted(p.name for p in stale.iterdir()) == ["a"]


def test_upload_refusals(user, tmp_path):
    ledger, storage = user
    with pytest.raises(UsageError, match="does not exist"):
        datasets.upload(ledger, storage, "mnist", [tmp_path / "missing"])
    with pytest.raises(GearError, match="no dataset 'other'"):
        datasets.upload(ledger, storage, "other", [tmp_path])
    with pytest.raises(UsageError, match="dataset name"):
        datasets.create(ledger, storage, "../x")
    assert ledger.versions("mnist") == []


def test_symlinks_out_of_the_tree_are_never_followed(user, tmp_path):
    ledger, storage = user
    source = _tree(tmp_path / "src", {"a": "1"})
    (source / "passwd").symlink_to("/etc/passwd")
    (source / "inside").symlink_to("a")
    datasets.upload(ledger, storage, "mnist", [source])
    target = storage.version_dir("mnist", 1)
    assert not os.path.lexists(target / "passwd") and (target / "inside").is_symlink()
    # rsync's totals count the dropped link: with links, the version is counted as it is.
    assert [(v["files"], v["size_bytes"]) for v in ledger.versions("mnist")] == [(2, 1 + len("a"))]


def test_parse_stats():
    lines = ["Number of files: 20022 (reg: 20001, dir: 21)", "Number of created files: 3 (reg: 3)",
             "Total file size: 577830912 bytes", "Total transferred file size: 6 bytes",
             "sent 289 bytes  received 85 bytes  748.00 bytes/sec"]
    stats = staging.parse_stats(lines)
    assert stats == staging.SourceStats({"reg": 20001, "dir": 21}, 577830912)
    assert stats.totals() == (577830912, 20001)
    assert staging.parse_stats(["Number of files: 1 (dir: 1)", "Total file size: 0 bytes"]).totals() == (0, 0)
    with_links = staging.parse_stats(["Number of files: 8 (reg: 2, dir: 2, link: 3, special: 1)",
                                      "Total file size: 26 bytes"])
    assert with_links.totals() is None
    assert staging.parse_stats(["sent 289 bytes  received 85 bytes"]) is None


def test_remove_a_version_then_the_dataset(user, tmp_path):
    ledger, storage = user
    for text in ("1", "2"):
        datasets.upload(ledger, storage, "mnist", [_tree(tmp_path / text, {"a": text})])
    assert datasets.remove(ledger, storage, datasets.parse_ref("mnist@1")) == [1]
    assert [v["version"] for v in ledger.versions("mnist")] == [2]
    assert not storage.version_dir("mnist", 1).exists()
    datasets.upload(ledger, storage, "mnist", [_tree(tmp_path / "3", {"a": "3"})])
    assert ledger.latest_version("mnist") == 3  # numbers are never reused
    datasets.remove(ledger, storage, datasets.parse_ref("mnist"))
    assert not ledger.dataset_exists("mnist") and not storage.dataset_dir("mnist").exists()
    with pytest.raises(UsageError):
        datasets.parse_ref("mnist@two")
