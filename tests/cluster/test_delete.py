"""`gear delete` on the real local cluster, as user alice."""

from __future__ import annotations

import json
import os

WRITE_FILES = r'''
import os, pathlib, sys
home = pathlib.Path("/hyperai/home")
(home / "model.bin").write_bytes(b"w" * 300_000)
(home / "frozen").mkdir()
(home / "frozen" / "a.txt").write_text("a")
os.chmod(home / "frozen", 0o500)             # a read-only directory in the saved working directory
(home / "locked").mkdir()
(home / "locked" / "b.txt").write_text("b")
os.chmod(home / "locked", 0o000)             # and one its owner cannot even list
os.symlink("/etc", home / "to-etc")
os.symlink(sys.argv[1], home / "to-outside")  # a link out of the container, to the user's own files
sys.exit(int(sys.argv[2]))
'''


def _lstat_sizes(path) -> int:
    total = 0
    for directory, subdirs, files in os.walk(path):
        for name in subdirs + files:
            info = os.lstat(os.path.join(directory, name))
            if not os.path.isdir(os.path.join(directory, name)) or os.path.islink(os.path.join(directory, name)):
                total += info.st_size
    return total


def test_delete_a_container_with_closed_executions(alice, container):
    outside = alice.make_dir({"precious.txt": "keep me\n"})
    code = alice.make_dir({"write.py": WRITE_FILES})
    for exit_code in ("0", "3"):
        alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "write.py", str(outside),
                   exit_code)
    history = alice.gear_json("history", container)
    assert [(e["id"], e["status"]) for e in history] == [(f"{container}/1", "completed"),
                                                         (f"{container}/2", "failed")]
    root = alice.storage / "containers" / container
    # Sealing gave "locked" read bits again (a closed execution is readable behind its container's
    # gate, storage/sharing.py): take them by hand, as a user may, for a directory gear cannot read.
    for number in (1, 2):
        alice.run("chmod", "000", str(root / str(number) / "home" / "locked"), check=True)
    size = _lstat_sizes(root)          # measured as root, who can read the locked directories
    assert size > 600_000
    seen_by_alice = alice.gear_json("du")["containers"][container]
    assert seen_by_alice == size - 2   # alice cannot list "locked" (b.txt, twice)

    # Without a terminal and without --yes: it lists what would go, then refuses; nothing changes.
    asked = alice.run("sh", "-c", f"exec gear delete {container} </dev/null")
    assert asked.returncode == 2 and "pass --yes" in asked.stderr, asked.stderr
    assert f"{container}/1" in asked.stdout and "frees" in asked.stdout and "no read permission" in asked.stdout
    # On a terminal, a wrong name cancels.
    typed = alice.run("sh", "-c", f"printf 'nope\\n' | script -qec 'gear delete {container}' /dev/null")
    assert typed.returncode == 1 and "you typed 'nope'" in typed.stdout, typed.stdout + typed.stderr
    assert root.is_dir() and len(alice.gear_json("history", container)) == 2

    result = alice.gear("delete", container, "--yes", "--json", check=True)
    report = json.loads(result.stdout)
    assert report["deleted"] is True
    assert [(e["id"], e["status"]) for e in report["executions"]] == [(f"{container}/1", "completed"),
                                                                      (f"{container}/2", "failed")]
    # Storage freed as reported. Before: what `gear du` shows, and the directories it could not read.
    # After: every byte, measured file by file as it went (no file was linked from outside).
    assert report["size_bytes"] == report["frees_bytes"] == seen_by_alice
    assert sorted(os.path.basename(p) for p in report["unreadable"]) == ["locked", "locked"]
    assert report["freed_bytes"] == size

    assert not root.exists() and not os.path.lexists(root)
    assert not [e for e in os.listdir(alice.storage / "containers") if container in e]   # no trash left
    assert (outside / "precious.txt").read_text() == "keep me\n"                          # links not followed
    assert os.path.isdir("/etc")
    assert container not in [c["name"] for c in alice.gear_json("ls")]
    assert container not in alice.gear_json("du")["containers"]
    gone = alice.gear("history", container)
    assert gone.returncode == 1 and "no container" in gone.stderr
    again = alice.gear("delete", container, "--yes")
    assert again.returncode == 1 and "no container" in again.stderr


def test_delete_is_refused_while_an_execution_runs_then_works_after_stop(alice, container):
    code = alice.make_dir({"x": ""})
    result = alice.gear("run", "-c", container, "--code", str(code), "--", "sleep", "600", check=True)
    execution = result.stdout.strip().splitlines()[-1]
    assert alice.wait_for(execution, {"running"})["status"] == "running"

    refused = alice.gear("delete", container, "--yes")
    assert refused.returncode == 1
    assert f"{execution} (running)" in refused.stderr and f"gear stop {execution}" in refused.stderr
    assert "Nothing was deleted" in refused.stderr
    assert (alice.storage / "containers" / container / "1").is_dir()
    assert alice.gear_json("show", execution)["status"] == "running"

    alice.gear("stop", execution, check=True)
    assert alice.gear_json("show", execution)["status"] == "terminated"
    deleted = alice.gear("delete", container, "--yes", check=True)
    assert f"deleted {container}: 1 execution(s)" in deleted.stdout
    assert not (alice.storage / "containers" / container).exists()
    assert container not in [c["name"] for c in alice.gear_json("ls")]
