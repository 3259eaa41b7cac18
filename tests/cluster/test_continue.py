"""Continuing an execution (docs/cli.md, `gear continue`): cheap, and never a byte or mode of the parent changed."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from conftest import tree_state

PARENT = r'''
import os, sqlite3
open("append.txt", "w").write("one\n")
open("truncate.txt", "w").write("long text\n" * 100)
open("rewrite.bin", "wb").write(b"A" * 4096)
open("mode.txt", "w").write("mode\n")
open("delete.txt", "w").write("gone soon\n")
open("rename.txt", "w").write("moving\n")
os.makedirs("sub", exist_ok=True)
open("sub/keep.txt", "w").write("kept\n")
db = sqlite3.connect("state.db"); db.execute("CREATE TABLE t (v)"); db.execute("INSERT INTO t VALUES (1)"); db.commit()
for d, names in {"replaced": ["a", "b"], "removed": ["x"], "renamed": ["y"], "to_file": ["z"], "ro": ["f"]}.items():
    os.makedirs(d, exist_ok=True)
    for n in names:
        open(f"{d}/{n}", "w").write(d + n)
os.chmod("ro", 0o555)
os.symlink("append.txt", "link")
open("to_dir", "w").write("a file first\n")
print("parent done")
'''

CHILD = r'''
import os, sqlite3
open("append.txt", "a").write("two\n")
open("truncate.txt", "r+").truncate(5)
with open("rewrite.bin", "r+b") as f:
    f.seek(100); f.write(b"B" * 10)
os.chmod("mode.txt", 0o600)
os.remove("delete.txt")
os.rename("rename.txt", "renamed.txt")
db = sqlite3.connect("state.db"); db.execute("UPDATE t SET v = 2"); db.commit()
open("new.txt", "w").write("new\n")
import shutil
shutil.rmtree("replaced"); os.mkdir("replaced"); open("replaced/c", "w").write("c")  # hides the old one
shutil.rmtree("removed")
shutil.move("renamed", "moved")  # a directory of the lower layer: EXDEV for os.rename
os.remove("link"); os.symlink("new.txt", "link")
os.remove("to_dir"); os.mkdir("to_dir"); open("to_dir/inside", "w").write("in")
shutil.rmtree("to_file"); open("to_file", "w").write("now a file")
os.chmod("ro", 0o755)  # the overlay shows the parent's modes as the program left them: its owner may chmod
print("child done")
'''



def _kept_mode(path: Path) -> int:
    """The mode a sealed file had for its program (sealing.py keeps it in an attribute)."""
    return int(os.getxattr(path, "user.containers.override_stat").split(b":")[2], 8)


def _last_id(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_continue_edits_in_place_and_the_parent_never_changes(alice, container):
    code = alice.make_dir({"parent.py": PARENT, "child.py": CHILD})
    parent = _last_id(alice.gear("run", "-c", container, "--code", str(code), "--param", "lr=0.1", "-f", "--",
                                 "python3", "parent.py"))
    parent_home = Path(alice.gear_json("show", parent)["workdir"])
    before = tree_state(parent_home)

    child = _last_id(alice.gear("continue", parent, "-f", "--", "python3", "child.py"))
    record = alice.gear_json("show", child)
    assert record["status"] == "completed" and record["parent"] == parent
    assert record["number"] == 2 and record["container"] == container
    assert record["params"] == {"lr": 0.1}

    assert tree_state(parent_home) == before  # not one byte, not one mode
    home = Path(record["workdir"])
    assert (home / "append.txt").read_text() == "one\ntwo\n"
    assert (home / "truncate.txt").read_text() == "long "
    assert (home / "rewrite.bin").read_bytes()[100:110] == b"B" * 10
    # Sealed (no write bit, readable once its container's gate lets a reader in), and the
    # mode the program gave it kept for the next overlay.
    assert oct(os.stat(home / "mode.txt").st_mode & 0o777) == oct(0o444) and _kept_mode(home / "mode.txt") == 0o600
    assert not (home / "delete.txt").exists() and (home / "renamed.txt").exists()
    assert (home / "new.txt").exists() and (home / "sub" / "keep.txt").read_text() == "kept\n"
    assert sorted(os.listdir(home / "replaced")) == ["c"] and not (home / "removed").exists()
    assert not (home / "renamed").exists() and (home / "moved" / "y").read_text() == "renamedy"
    assert os.readlink(home / "link") == "new.txt"
    assert (home / "to_dir" / "inside").read_text() == "in" and (home / "to_file").read_text() == "now a file"
    assert os.listdir(home / "ro") == ["f"] and oct(os.stat(home / "ro").st_mode & 0o777) == oct(0o555)
    assert _kept_mode(home / "ro") == 0o755   # the overlay showed the parent's kept modes, so chmod worked
    assert not any(name.startswith(".wh.") for _, _, files in os.walk(home) for name in files)
    # Unchanged files share the parent's blocks (hard links), changed ones do not.
    assert os.stat(home / "sub" / "keep.txt").st_ino == os.stat(parent_home / "sub" / "keep.txt").st_ino
    assert os.stat(home / "append.txt").st_ino != os.stat(parent_home / "append.txt").st_ino
    assert not (home.parent / "upper").exists()  # the overlay's layers are cleaned up

    history = alice.gear_json("history", container)
    assert [(e["id"], e["parent"]) for e in history] == [(parent, None), (child, parent)]
    table = alice.gear("history", container, check=True).stdout.splitlines()
    assert table[0].split()[:3] == ["EXECUTION", "PARENT", "STATUS"]
    assert table[2].split()[:3] == [child, parent, "completed"] and table[1].split()[1] == "completed"

    # A continuation of the continuation: its parent (the child) stays as it was in turn.
    child_state = tree_state(home)
    grandchild = _last_id(alice.gear("continue", child, "-f", "--", "python3", "-c",
                                     "open('append.txt', 'a').write('three\\n'); import shutil; shutil.rmtree('moved')"))
    grandchild_home = Path(alice.gear_json("show", grandchild)["workdir"])
    assert alice.gear_json("show", grandchild)["status"] == "completed"
    assert tree_state(home) == child_state and tree_state(parent_home) == before
    assert (grandchild_home / "append.txt").read_text() == "one\ntwo\nthree\n"
    assert not (grandchild_home / "moved").exists() and (grandchild_home / "replaced" / "c").read_text() == "c"
    assert os.stat(grandchild_home / "sub" / "keep.txt").st_ino == os.stat(parent_home / "sub" / "keep.txt").st_ino


def test_continue_reuses_the_command_and_bindings_and_lists_ignored_uploads(alice, container):
    name = f"d-{uuid.uuid4().hex[:8]}"
    alice.gear("data", "create", name, check=True)
    alice.gear("data", "upload", name, str(alice.make_dir({"x.txt": "data\n"})), check=True)
    code = alice.make_dir({"step.py": "import os\nprint(sorted(os.listdir('/hyperai/input/input0')))\n"
                                      "open('count.txt', 'a').write('x')\n"})
    parent = _last_id(alice.gear("run", "-c", container, "--code", str(code), "-d", f"{name}:input0", "-f",
                                 "--", "python3", "step.py"))
    new_code = alice.make_dir({"step.py": "print('a new step.py that the working directory overrides')\n",
                               "extra.py": "\n"})
    result = alice.gear("continue", parent, "--code", str(new_code), "-f")
    child = _last_id(result)
    assert "step.py" in result.stderr and "ignored" in result.stderr and "extra.py" not in result.stderr
    record = alice.gear_json("show", child)
    assert record["command"] == ["python3", "step.py"]
    assert [(b["source"], b["target"]) for b in record["bindings"]] == [(f"{name}@1", "/hyperai/input/input0")]
    assert (Path(record["workdir"]) / "count.txt").read_text() == "xx"
    assert "['x.txt']" in alice.gear("logs", child, check=True).stdout


def test_home_as_input_and_no_home(alice, container):
    code = alice.make_dir({"make.py": "open('result.txt', 'w').write('r\\n')\n",
                           "look.py": "import json, os\njson.dump({'home': sorted(os.listdir('.')), "
                                      "'input1': sorted(os.listdir('/hyperai/input/input1'))}, open('look.json', 'w'))\n"})
    parent = _last_id(alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "make.py"))
    child = _last_id(alice.gear("continue", parent, "--home-as", "input1", "-f", "--", "python3", "look.py"))
    look = json.loads((Path(alice.gear_json("show", child)["workdir"]) / "look.json").read_text())
    assert "result.txt" in look["input1"] and "result.txt" not in look["home"]
    empty = _last_id(alice.gear("continue", parent, "--no-home", "-f", "--", "python3", "look.py"))
    look = json.loads((Path(alice.gear_json("show", empty)["workdir"]) / "look.json").read_text())
    assert "result.txt" not in look["home"] and look["input1"] == []


def test_continue_refusals_create_nothing(alice, container):
    code = alice.make_dir({"x": ""})
    missing = alice.gear("continue", f"{container}/9")
    assert missing.returncode == 1 and f"no execution {container}/9" in missing.stderr
    running = _last_id(alice.gear("run", "-c", container, "--code", str(code), "--", "sleep", "300"))
    try:
        refused = alice.gear("continue", running)
        assert refused.returncode == 1 and "still" in refused.stderr and f"gear stop {running}" in refused.stderr
    finally:
        alice.gear("stop", running, check=True)
    name = f"d-{uuid.uuid4().hex[:8]}"
    alice.gear("data", "create", name, check=True)
    alice.gear("data", "upload", name, str(alice.make_dir({"x.txt": "data\n"})), check=True)
    bound = _last_id(alice.gear("run", "-c", container, "--code", str(code), "-d", f"{name}:input0", "-f",
                                "--", "true"))
    taken = alice.gear("continue", bound, "--home-as", "input0")
    assert taken.returncode == 2 and "already taken" in taken.stderr
    both = alice.gear("continue", bound, "--home-as", "input1", "--no-home")
    assert both.returncode == 2
    assert len(alice.gear_json("history", container)) == 2


def test_continue_without_fuse_overlayfs_copies_the_parent(alice, container):
    """Where the overlay cannot be mounted, the job falls back to a copy: slower, just as safe."""
    code = alice.make_dir({"parent.py": PARENT, "child.py": CHILD})
    parent = _last_id(alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "parent.py"))
    parent_home = Path(alice.gear_json("show", parent)["workdir"])
    before = tree_state(parent_home)
    # Fault injection: a fuse-overlayfs that fails, first on the job's PATH (sbatch exports it).
    shims = alice.make_dir({"fuse-overlayfs": "#!/bin/sh\necho 'fuse: device not found' >&2\nexit 1\n"})
    os.chmod(shims / "fuse-overlayfs", 0o755)
    result = alice.run("bash", "-c", f'PATH={shims}:"$PATH" exec gear continue {parent} -f -- python3 child.py')
    child = _last_id(result)
    record = alice.gear_json("show", child)
    assert record["status"] == "completed", (alice.gear("logs", child).stdout, record)
    assert tree_state(parent_home) == before
    home = Path(record["workdir"])
    assert (home / "append.txt").read_text() == "one\ntwo\n" and not (home / "delete.txt").exists()
    assert sorted(os.listdir(home / "replaced")) == ["c"] and os.readlink(home / "link") == "new.txt"
    # A copy: nothing shared with the parent, and no overlay layers left.
    assert os.stat(home / "sub" / "keep.txt").st_ino != os.stat(parent_home / "sub" / "keep.txt").st_ino
    assert not (home.parent / "upper").exists() and not (home.parent / "merged").exists()
