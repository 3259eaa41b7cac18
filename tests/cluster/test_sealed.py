"""A closed execution's working directory never changes again: not through the
owner's ordinary tools, and not through another execution sharing its files.

The audit's case: hl/1 writes model.txt, hl/2 continues it (sharing the file by
hard link), then `echo edited >> <hl/2's workdir>/model.txt` on the login node
changed hl/1's saved file too. Continuations must still be able to change
what they inherit, inside their job, and continuing must not become a copy.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import User, tree_state


@pytest.fixture(scope="module")
def sealer() -> User:
    return User("sealer1")



def _run(user: User, *args: str) -> str:
    result = user.gear(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


ORDINARY_TOOLS = {
    "append": 'echo edited >> "$1/model.txt"',
    "truncate": ': > "$1/model.txt"',
    "remove": 'rm -f "$1/model.txt"',
    "rename": 'mv "$1/model.txt" "$1/moved.txt"',
    "new file": 'echo x > "$1/new.txt"',
    "editor save": 'python3 -c "import os, sys; p = sys.argv[1] + \'/model.txt\'; '
                   'open(p + \'.swp\', \'w\').write(\'edited\'); os.replace(p + \'.swp\', p)" "$1"',
    "remove below": 'rm -rf "$1/sub"',
}


def test_neither_a_saved_directory_nor_its_continuation_can_be_changed_by_the_owner(sealer, container):
    code = sealer.make_dir({"noop.txt": ""})
    parent = _run(sealer, "run", "-c", container, "--code", str(code), "-f", "--", "bash", "-c",
                  "echo original > model.txt; mkdir sub; echo s > sub/s.txt; chmod 640 sub/s.txt")
    child = _run(sealer, "continue", parent, "-f", "--", "bash", "-c", "echo child >> log.txt")
    parent_home = Path(sealer.gear_json("show", parent)["workdir"])
    child_home = Path(sealer.gear_json("show", child)["workdir"])
    # Zero-copy: the child's unchanged files are the parent's (hard links), not copies.
    assert os.stat(child_home / "model.txt").st_ino == os.stat(parent_home / "model.txt").st_ino
    before = {home: tree_state(home) for home in (parent_home, child_home)}

    for what, script in ORDINARY_TOOLS.items():
        for home in (child_home, parent_home):
            result = sealer.run("bash", "-c", script, "_", str(home))
            assert result.returncode != 0, f"{what} in {home} succeeded"
            assert "Permission denied" in result.stderr or "Read-only" in result.stderr, (what, result.stderr)
    assert {home: tree_state(home) for home in before} == before
    assert (parent_home / "model.txt").read_text() == "original\n"


def test_a_continuation_still_changes_what_it_inherited_and_the_parent_never_does(sealer, container):
    code = sealer.make_dir({"noop.txt": ""})
    parent = _run(sealer, "run", "-c", container, "--code", str(code), "-f", "--", "bash", "-c",
                  "echo original > model.txt; echo gone > gone.txt; chmod 600 model.txt; mkdir sub;"
                  " echo s > sub/s.txt")
    parent_home = Path(sealer.gear_json("show", parent)["workdir"])
    before = tree_state(parent_home)
    script = ("set -e; test -w model.txt; echo more >> model.txt; chmod 640 model.txt; rm gone.txt;"
              " chmod 700 sub; echo t > sub/t.txt; echo ok")
    child = _run(sealer, "continue", parent, "-f", "--", "bash", "-c", script)
    record = sealer.gear_json("show", child)
    assert record["status"] == "completed", record
    assert "ok" in sealer.gear("logs", child, check=True).stdout
    assert tree_state(parent_home) == before          # not one byte, mode or attribute of the parent
    home = Path(record["workdir"])
    assert (home / "model.txt").read_text() == "original\nmore\n" and not (home / "gone.txt").exists()
    # Sealed: write bits taken, read (and search) bits given to all, since the
    # container's directory decides who may reach it (storage/sharing.py).
    assert stat.S_IMODE(os.stat(home / "model.txt").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(home / "sub").st_mode) == 0o555

    # A grandchild sees the child's modes (0640 for model.txt), so it may write again.
    grandchild = _run(sealer, "continue", child, "-f", "--", "bash", "-c",
                      "test -w model.txt && stat -c %a model.txt && echo third >> model.txt")
    assert sealer.gear_json("show", grandchild)["status"] == "completed"
    assert "640" in sealer.gear("logs", grandchild, check=True).stdout
    assert (home / "model.txt").read_text() == "original\nmore\n"

    freed = sealer.gear("delete", container, "--yes")
    assert freed.returncode == 0, freed.stderr
    assert not parent_home.parent.parent.exists()
