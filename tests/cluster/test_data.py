"""Datasets, bindings and data movement on the real local cluster."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from conftest import site_yaml_text

READ_INPUTS = r'''
import errno, json, os, pathlib, sys
report = {}
for k in range(5):
    slot = pathlib.Path(f"/hyperai/input/input{k}")
    files = sorted(str(p.relative_to(slot)) for p in slot.rglob("*") if p.is_file())
    try:
        (slot / "new.txt").write_text("x")
        writable = True
    except OSError as exc:
        writable = errno.errorcode[exc.errno]
    report[slot.name] = {"files": files, "write": writable}
    if (slot / "a.txt").exists():
        report[slot.name]["a"] = (slot / "a.txt").read_text()
    if (slot / "out.txt").exists():
        report[slot.name]["out"] = (slot / "out.txt").read_text()
pathlib.Path("inputs.json").write_text(json.dumps(report))
'''


def _last_id(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def dataset(alice) -> str:
    name = f"d-{uuid.uuid4().hex[:8]}"
    alice.gear("data", "create", name, check=True)
    return name


def test_upload_makes_immutable_numbered_versions(alice, dataset):
    first = alice.make_dir({"a.txt": "one\n", "sub/b.txt": "bee\n"})
    (first / "escape").symlink_to("/etc/passwd")
    result = alice.gear("data", "upload", dataset, str(first), check=True)
    assert f"{dataset}@1: 2 files" in result.stdout
    second = alice.make_dir({"a.txt": "two\n"})
    alice.gear("data", "upload", dataset, str(second / "a.txt"), check=True)
    versions = alice.gear_json("data", "versions", dataset)
    assert [(v["version"], v["files"]) for v in versions] == [(1, 2), (2, 1)]
    assert any(d["name"] == dataset and d["latest"] == 2 for d in alice.gear_json("data", "ls"))

    v1 = alice.storage / "datasets" / dataset / "versions" / "1"
    assert (v1 / "a.txt").read_text() == "one\n"
    assert not (v1 / "escape").exists() and not (v1 / "escape").is_symlink()  # never followed out
    # Immutable: the owner's plain writes fail, by permissions.
    for command in (f"echo x >> {v1}/a.txt", f"touch {v1}/new", f"rm {v1}/sub/b.txt"):
        denied = alice.run("bash", "-c", command)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, command
    assert (v1 / "a.txt").read_text() == "one\n"


def test_bindings_latest_version_and_read_only(alice, dataset, container):
    alice.gear("data", "upload", dataset, str(alice.make_dir({"a.txt": "one\n"})), check=True)
    alice.gear("data", "upload", dataset, str(alice.make_dir({"a.txt": "two\n"})), check=True)
    code = alice.make_dir({"read.py": READ_INPUTS})
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(code), "-d", f"{dataset}:input0",
                                    "-d", f"{dataset}@1:/hyperai/input/input3", "-f", "--", "python3", "read.py"))
    record = alice.gear_json("show", execution)
    assert record["status"] == "completed"
    assert [(b["source"], b["target"], b["read_only"]) for b in record["bindings"]] == [
        (f"{dataset}@2", "/hyperai/input/input0", True), (f"{dataset}@1", "/hyperai/input/input3", True)]
    report = json.loads((Path(record["workdir"]) / "inputs.json").read_text())
    assert report["input0"]["a"] == "two\n" and report["input3"]["a"] == "one\n"
    assert report["input0"]["write"] == "EROFS" and report["input3"]["write"] == "EROFS"
    assert report["input1"]["files"] == []


def test_pipeline_binds_a_working_directory_read_only_without_copying(alice, container):
    producer = alice.make_dir({"make.py": "open('out.txt', 'w').write('from step one\\n')\n"})
    first = _last_id(alice.gear("run", "-c", container, "--code", str(producer), "-f", "--", "python3", "make.py"))
    consumer = alice.make_dir({"read.py": READ_INPUTS})
    second = _last_id(alice.gear("run", "-c", container, "--code", str(consumer), "-d", f"{first}:input2", "-f",
                                 "--", "python3", "read.py"))
    record = alice.gear_json("show", second)
    report = json.loads((Path(record["workdir"]) / "inputs.json").read_text())
    assert report["input2"]["out"] == "from step one\n" and report["input2"]["write"] == "EROFS"
    assert record["bindings"][0]["kind"] == "execution" and record["bindings"][0]["source"] == first
    assert not (Path(record["workdir"]) / "out.txt").exists()  # bound, not copied


def test_copy_into_home_keeps_the_source_and_lists_ignored_uploads(alice, container):
    producer = alice.make_dir({"make.py": "open('state.txt', 'w').write('v1\\n')\n"})
    first = _last_id(alice.gear("run", "-c", container, "--code", str(producer), "-f", "--", "python3", "make.py"))
    editor = alice.make_dir({"make.py": "# a newer make.py that the copied working directory overrides\n",
                             "edit.py": "f = open('state.txt', 'a'); f.write('v2\\n'); f.close()\n"
                                        "print(open('make.py').read())\n"})
    result = alice.gear("run", "-c", container, "--code", str(editor), "-d", f"{first}:/hyperai/home", "-f",
                        "--", "python3", "edit.py")
    second = _last_id(result)
    assert "make.py" in result.stderr and "ignored" in result.stderr
    new_home = Path(alice.gear_json("show", second)["workdir"])
    old_home = Path(alice.gear_json("show", first)["workdir"])
    assert (new_home / "state.txt").read_text() == "v1\nv2\n"
    assert (old_home / "state.txt").read_text() == "v1\n"
    assert "open('state.txt', 'w')" in (new_home / "make.py").read_text()  # the working directory's file kept


def test_dataset_from_output_makes_an_independent_read_only_version(alice, container):
    producer = alice.make_dir({"make.py": "import os\nos.makedirs('processed')\n"
                                          "open('processed/x.txt', 'w').write('clean\\n')\nopen('log.txt', 'w')\n"})
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(producer), "-f", "--", "python3", "make.py"))
    name = f"d-{uuid.uuid4().hex[:8]}"
    record = alice.gear_json("data", "from-output", execution, "--dataset", name, "--from", "processed")
    assert record["version"] == 1 and record["files"] == 1 and record["source"] == f"from-output: {execution}:processed"
    version_file = alice.storage / "datasets" / name / "versions" / "1" / "x.txt"
    source_file = Path(alice.gear_json("show", execution)["workdir"]) / "processed" / "x.txt"
    assert version_file.read_text() == "clean\n"
    # cp --reflink=auto: shared blocks where the file system allows, never a shared inode
    # (the version's modes and the working directory's kept modes stay each their own).
    assert os.stat(version_file).st_ino != os.stat(source_file).st_ino
    assert not os.stat(version_file).st_mode & 0o222 and not os.stat(source_file).st_mode & 0o222  # both sealed
    assert alice.gear_json("du")["datasets"][name] > 0


def test_a_bound_dataset_cannot_be_removed_while_the_execution_runs(alice, dataset, container):
    alice.gear("data", "upload", dataset, str(alice.make_dir({"a.txt": "one\n"})), check=True)
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(alice.make_dir({})),
                                    "-d", f"{dataset}:input0", "--", "sleep", "300"))
    try:
        refused = alice.gear("data", "rm", f"{dataset}@1")
        assert refused.returncode == 1 and execution in refused.stderr
        assert (alice.storage / "datasets" / dataset / "versions" / "1" / "a.txt").exists()
    finally:
        alice.gear("stop", execution, check=True)
    alice.gear("data", "rm", f"{dataset}@1", check=True)
    assert not (alice.storage / "datasets" / dataset / "versions" / "1").exists()
    alice.gear("data", "rm", dataset, check=True)
    assert not (alice.storage / "datasets" / dataset).exists()
    assert all(d["name"] != dataset for d in alice.gear_json("data", "ls"))


@pytest.mark.parametrize("specs,words", [
    (["{d}:input0", "{d}:input1", "{d}:input2", "{d}:input3", "{d}:input4", "{d}:/input0"], ["already bound"]),
    (["{d}:input0", "{d}:input0"], ["already bound"]),
    (["{d}:input5"], ["input5 is not a slot"]),
    (["nosuchdataset:input0"], ["no dataset 'nosuchdataset'"]),
    (["{d}@9:input0"], ["has no version 9"]),
    (["{d}@x:input0"], ["version 'x' is not a number"]),
    (["nosuch/7:input0"], ["no execution nosuch/7"]),
    (["{d},x:input0"], ["invalid binding", "dataset name"]),
    (["{d}:input0:ro"], ["more than one ':'"]),
    (["{d}:/somewhere"], ["target '/somewhere'"]),
    (["bob/{d}:input0"], ["not shared with you"]),
    (["{d}:/hyperai/home"], ["only an execution's working directory"]),
])
def test_bad_bindings_create_nothing(alice, dataset, container, specs, words):
    alice.gear("data", "upload", dataset, str(alice.make_dir({"a.txt": "one\n"})), check=True)
    args = []
    for spec in specs:
        args += ["-d", spec.format(d=dataset)]
    result = alice.gear("run", "-c", container, "--code", str(alice.make_dir({})), *args, "--", "true")
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr, result.stderr
    assert not (alice.storage / "containers" / container).exists()
    assert all(c["name"] != container for c in alice.gear_json("ls"))


def test_a_sixth_input_is_refused(alice, dataset, container):
    args = []
    for k in range(5):
        args += ["-d", f"{dataset}:input{k}"]
    args += ["-d", f"{container}/1:input0"]
    result = alice.gear("run", "-c", container, "--code", str(alice.make_dir({})), *args, "--", "true")
    assert result.returncode == 2 and ("at most 5 inputs" in result.stderr or "already bound" in result.stderr)


def test_an_open_execution_is_not_a_source(alice, container):
    running = _last_id(alice.gear("run", "-c", container, "--code", str(alice.make_dir({})), "--", "sleep", "300"))
    try:
        result = alice.gear("run", "-c", container, "--code", str(alice.make_dir({})), "-d", f"{running}:input0",
                            "--", "true")
        assert result.returncode == 1 and "only a closed execution" in result.stderr
        assert len(alice.gear_json("history", container)) == 1
    finally:
        alice.gear("stop", running, "--now")


def test_upload_of_a_missing_path(alice, dataset):
    result = alice.gear("data", "upload", dataset, "/nonexistent/path")
    assert result.returncode != 0 and "/nonexistent/path" in result.stderr
    assert alice.gear_json("data", "versions", dataset) == []


def _scratch_site(alice, interval: int = 10) -> Path:
    """A copy of the cluster's site configuration with the working directory on node-local scratch."""
    site = alice.make_dir({})
    repo_site = Path(__file__).parents[2] / "site-config"
    for name in ("compute-types.yaml", "images.yaml"):
        (site / name).write_text((repo_site / name).read_text())
    (site / "site.yaml").write_text(site_yaml_text() + (
        f"\nworkdir:\n  mode: scratch\n  scratch_dir: /tmp/gear-scratch\n  save_interval: {interval}\n"))
    scratch = Path("/tmp/gear-scratch")
    scratch.mkdir(exist_ok=True)
    scratch.chmod(0o1777)
    for path in site.iterdir():
        os.chown(path, alice.pw.pw_uid, alice.pw.pw_gid)
    return site


def test_scratch_mode_saves_periodically_and_at_the_end(alice, container):
    site = _scratch_site(alice)
    code = alice.make_dir({"work.py": "import time\nopen('early.txt', 'w').write('early\\n')\n"
                                      "time.sleep(25)\nopen('late.txt', 'w').write('late\\n')\n"})
    env = {"GEAR_SITE_CONFIG": str(site)}
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(code), "--", "python3", "work.py", env=env))
    home = alice.storage / "containers" / container / "1" / "home"
    deadline = time.monotonic() + 60
    while not (home / "early.txt").exists() and time.monotonic() < deadline:
        time.sleep(1)
    # Seen on shared storage while the program still runs: a periodic save.
    assert (home / "early.txt").exists()
    assert alice.gear_json("status", execution)["status"] == "running"
    assert not (home / "late.txt").exists()
    deadline = time.monotonic() + 90
    while alice.gear_json("status", execution)["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(2)
    assert alice.gear_json("show", execution)["status"] == "completed"
    assert (home / "late.txt").read_text() == "late\n"
    assert not list(Path("/tmp/gear-scratch").glob(f"gear-alice-{container}-1-*"))  # scratch cleaned


def test_a_failed_final_save_is_never_reported_as_saved(alice, container):
    """Fault: a file rsync cannot read (exit 23) when saving from scratch."""
    site = _scratch_site(alice, interval=600)
    code = alice.make_dir({"work.py": "import os\nopen('secret', 'w').write('x')\nos.chmod('secret', 0)\n"})
    result = alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "work.py",
                        env={"GEAR_SITE_CONFIG": str(site)})
    assert result.returncode == 1  # -f: the execution did not complete
    record = alice.gear_json("show", result.stdout.strip().splitlines()[-1])
    assert record["status"] == "failed" and record["exit_code"] == 0
    assert "final save" in record["note"] and "failed" in record["note"]


# A program from OpenBayes opens /input0 and writes /output in its own code, not through gear's paths.
OPENBAYES_PATHS = '''
import errno, json, os
report = {"a": open("/input0/a.txt").read(), "input4": sorted(os.listdir("/input4"))}
try:
    open("/input0/new.txt", "w")
except OSError as exc:
    report["write"] = errno.errorcode[exc.errno]
with open("/output/seen.json", "w") as out:
    json.dump(report, out)
'''


def test_a_program_that_names_input0_in_its_code_finds_its_data_there(alice, dataset, container):
    alice.gear("data", "upload", dataset, str(alice.make_dir({"a.txt": "one\n"})), check=True)
    code = alice.make_dir({"main.py": OPENBAYES_PATHS})
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(code), "-d", f"{dataset}:input0",
                                    "-f", "--", "python3", "main.py"))
    record = alice.gear_json("show", execution)
    assert record["status"] == "completed", alice.gear("logs", execution).stdout
    # /input0 is input0, read-only as it is; /output is the working directory.
    seen = json.loads((Path(record["workdir"]) / "seen.json").read_text())
    assert seen == {"a": "one\n", "input4": [], "write": "EROFS"}
