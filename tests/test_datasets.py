"""Dataset versions on a local file system (no cluster needed)."""

import os
from pathlib import Path

import pytest

from gear_hpc import datasets, staging
from gear_hpc.errors import GearError, UsageError
from gear_hpc.ledger import Ledger
from gear_hpc.storage import UserStorage


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


def test_upload_makes_a_read_only_version(user, tmp_path):
    ledger, storage = user
    source = _tree(tmp_path / "src", {"a.txt": "a", "sub/b.txt": "bb"})
    seen = []
    version, progress = datasets.upload(ledger, storage, "mnist", [source], on_progress=seen.append)
    assert version == 1 and progress.bytes_done == 3 and seen
    target = storage.version_dir("mnist", 1)
    assert (target / "sub" / "b.txt").read_text() == "bb"
    assert not os.stat(target / "a.txt").st_mode & 0o222
    assert not os.stat(target / "sub").st_mode & 0o222
    if os.geteuid() != 0:  # root ignores permissions; the cluster tests check as alice
        with pytest.raises(PermissionError):
            (target / "a.txt").write_text("changed")
    assert ledger.versions("mnist")[0]["files"] == 2
    assert list((storage.dataset_dir("mnist") / "incoming").iterdir()) == []


def test_several_paths_keep_their_names(user, tmp_path):
    ledger, storage = user
    _tree(tmp_path, {"one.csv": "1", "dir/two.csv": "2"})
    datasets.upload(ledger, storage, "mnist", [tmp_path / "one.csv", tmp_path / "dir"])
    target = storage.version_dir("mnist", 1)
    assert (target / "one.csv").exists() and (target / "dir" / "two.csv").exists()


def test_an_interrupted_upload_makes_no_version_and_a_rerun_resumes(user, tmp_path, monkeypatch):
    ledger, storage = user
    source = _tree(tmp_path / "src", {f"f{i}.txt": "x" * 100 for i in range(5)})
    real = staging.rsync_with_progress

    def interrupted(src, dst, on_progress, *options):
        # The copy gets one file across, then the connection drops.
        Path(dst, "f0.txt").write_text("x" * 100)
        raise GearError("copy failed: interrupted by a signal")

    monkeypatch.setattr(staging, "rsync_with_progress", interrupted)
    with pytest.raises(GearError):
        datasets.upload(ledger, storage, "mnist", [source])
    assert ledger.versions("mnist") == []
    assert not (storage.dataset_dir("mnist") / "versions" / "1").exists()
    monkeypatch.setattr(staging, "rsync_with_progress", real)
    version, progress = datasets.upload(ledger, storage, "mnist", [source])
    assert version == 1 and len(list(storage.version_dir("mnist", 1).iterdir())) == 5
    assert progress.files_total == 6  # rsync counts the directory too
    assert progress.bytes_done == 400  # f0.txt had arrived: only the rest was sent


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
