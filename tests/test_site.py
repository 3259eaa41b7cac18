from pathlib import Path

import pytest

from gear_hpc.base.errors import NotFound, SiteConfigError
from gear_hpc.site import loading as site


def test_example_site_loads(gear_env):
    loaded = site.load()
    assert set(loaded.compute_types) == {"cpu-small", "gpu-1", "gpu-2"}
    assert loaded.compute_types["cpu-small"].cpus == 2
    assert loaded.compute_types["gpu-1"].gres == "gpu:devgpu:1"
    assert loaded.compute_types["gpu-2"].gpus == 2
    assert loaded.compute_types["cpu-small"].gres is None
    assert set(loaded.images) == {"python", "jupyter"}
    assert loaded.storage_root == gear_env["storage"]


def test_unknown_type_lists_the_valid_ones(gear_env):
    with pytest.raises(NotFound) as info:
        site.load().compute_type("h100-8")
    assert "cpu-small" in str(info.value) and "gpu-1" in str(info.value)
    with pytest.raises(NotFound) as info:
        site.load().image("tensorflow")
    assert "python" in str(info.value)


def test_missing_directory(tmp_path):
    with pytest.raises(SiteConfigError) as info:
        site.load(tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "GEAR_SITE_CONFIG" in str(info.value)


def test_missing_file_is_named(gear_env):
    (gear_env["site"] / "images.yaml").unlink()
    with pytest.raises(SiteConfigError) as info:
        site.load()
    assert "images.yaml" in str(info.value) and "missing" in str(info.value)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("file,old,new,expected", [
    ("compute-types.yaml", "memory: 2G", "memory: lots", ["compute-types.yaml", "cpu-small.memory", "4G"]),
    ("compute-types.yaml", "partition: cpu", 'partition: "cpu\\nx"', ["cpu-small.partition", "control"]),
    ("compute-types.yaml", "cpus: 2\n  memory: 2G", "cpus: 0\n  memory: 2G", ["cpu-small.cpus", "at least 1"]),
    ("compute-types.yaml", "  time_limit: \"04:00:00\"\n\ngpu-1", "  time_limit: soon\n\ngpu-1",
     ["cpu-small.time_limit", "04:00:00"]),
    ("compute-types.yaml", "  gpus: 1\n", "  gpus: 1\n  colour: red\n", ["gpu-1.colour", "unknown key", "partition"]),
    ("site.yaml", "storage_root: /srv/gear", "storage_root: srv/gear", ["site.yaml", "storage_root", "absolute"]),
    ("site.yaml", "default_compute_type: cpu-small", "default_compute_type: huge",
     ["default_compute_type", "huge", "cpu-small"]),
    ("site.yaml", "time_limit_warning: 120", "time_limit_warning: 5", ["time_limit_warning", "10 to 65535"]),
    ("site.yaml", "apptainer: apptainer", "apptainer: 'apptainer; rm -rf /'", ["apptainer", "special"]),
    ("images.yaml", "  path: ", "  size: 3\n  path: ", ["python.size", "unknown key"]),
    ("site.yaml", "storage_root: /srv/gear", "storage_root: [", ["site.yaml", "not valid YAML"]),
])
def test_wrong_settings_name_file_key_and_what_is_allowed(gear_env, monkeypatch, file, old, new, expected):
    monkeypatch.delenv("GEAR_STORAGE_ROOT")
    _edit(gear_env["site"] / file, old, new)
    with pytest.raises(SiteConfigError) as info:
        site.load()
    for word in expected:
        assert word in str(info.value)


def test_missing_required_key(gear_env, monkeypatch):
    monkeypatch.delenv("GEAR_STORAGE_ROOT")
    _edit(gear_env["site"] / "site.yaml", "storage_root: /srv/gear", "")
    with pytest.raises(SiteConfigError) as info:
        site.load()
    assert "storage_root: is required" in str(info.value)


def test_parsed_files_are_cached_and_a_change_is_seen_at_once(gear_env, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = site.load()
    cached = list((tmp_path / "cache" / "gear-hpc" / "site").iterdir())
    assert [p.name for p in cached] == ["last-valid.marshal"]  # one record for the parsed files and the fast path
    assert site.load() == first
    _edit(gear_env["site"] / "compute-types.yaml", "cpus: 2\n  memory: 2G", "cpus: 3\n  memory: 2G")
    assert site.load().compute_types["cpu-small"].cpus == 3
    # A cached file is validated like a fresh one.
    _edit(gear_env["site"] / "compute-types.yaml", "cpus: 3\n  memory: 2G", "cpus: 0\n  memory: 2G")
    with pytest.raises(SiteConfigError):
        site.load()
    with pytest.raises(SiteConfigError):
        site.load()
