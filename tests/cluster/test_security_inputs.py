"""Hostile or broken input on the real cluster, as ordinary users.

A program that writes `ln -s / rootlink` into its working directory, paths
of other users, targets that look like options, and a user's storage at
ENOSPC: each failure is one `gear: error: …` line, and nothing escapes or is
left half-written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import User

WRITE_LINKS = r'''
import os
open("/hyperai/home/ok.py", "w").write("print(1)\n")
os.symlink("/", "/hyperai/home/rootlink")
'''


@pytest.fixture(scope="module")
def mallory() -> User:
    return User("secmallory")


@pytest.fixture(scope="module")
def victim() -> User:
    return User("secvictim")


def one_line_error(result) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gear: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def with_rootlink(mallory) -> str:
    """A closed execution whose program left a link to / in its working directory."""
    code = mallory.make_dir({"links.py": WRITE_LINKS})
    result = mallory.gear("run", "-c", "sec-links", "--code", str(code), "-f", "--", "python3", "links.py")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-1]


def test_from_never_follows_a_link_out_of_the_working_directory(mallory, with_rootlink):
    work = mallory.make_dir({})
    result = mallory.gear("download", with_rootlink, "--from", "rootlink/etc/apt", "-t", "stolen", cwd=str(work))
    assert result.returncode == 2 and "rootlink is a symbolic link" in one_line_error(result)
    assert not (work / "stolen").exists()
    result = mallory.gear("data", "from-output", with_rootlink, "--from", "rootlink/etc/apt", "--dataset", "stolen")
    assert result.returncode == 2 and "rootlink is a symbolic link" in one_line_error(result)
    assert "stolen" not in mallory.gear("data", "ls").stdout


def test_a_target_that_looks_like_an_option_is_a_directory(mallory, with_rootlink):
    work = mallory.make_dir({})
    result = mallory.gear("download", with_rootlink, "--from", "ok.py", "-t", "-rf", cwd=str(work))
    assert result.returncode == 0, result.stderr
    assert (work / "-rf" / "ok.py").read_text() == "print(1)\n"


def test_other_users_and_unreadable_paths_are_one_line(mallory, victim):
    victim.gear("ls", check=True)   # the victim's storage: theirs alone (0700)
    mallory.gear("data", "create", "secgrab", check=True)
    result = mallory.gear("data", "upload", "secgrab", str(victim.storage / "ledger.sqlite"))
    assert "permission denied" in one_line_error(result)
    code = mallory.make_dir({"a.py": "print(1)\n", "private/b.py": ""})
    mallory.run("chmod", "000", str(code / "private"), check=True)
    result = mallory.gear("run", "-c", "sec-unreadable", "--code", str(code), "--", "true")
    one_line_error(result)
    assert "sec-unreadable" not in mallory.gear("ls").stdout


def test_not_utf8_and_a_file_size_limit_leave_nothing(mallory):
    code = mallory.make_dir({"a.py": "print(1)\n"})
    result = mallory.run("bash", "-c", f"gear run -c sec-utf -m $'bad\\xff' --code {code} -- true")
    assert result.returncode == 2 and "not valid UTF-8" in one_line_error(result)
    assert not (mallory.storage / "containers" / "sec-utf").exists()
    big = mallory.make_dir({f"f{i}.txt": "x" * 20_000 for i in range(5)})
    result = mallory.run("bash", "-c", f"ulimit -f 10; gear run -c sec-ulimit --code {big} -- true")
    assert "no transaction is active" not in one_line_error(result)
    assert not (mallory.storage / "containers" / "sec-ulimit").exists()
    assert "sec-ulimit" not in mallory.gear("ls").stdout


def test_a_full_storage_is_said_and_delete_is_the_way_out():
    user = User("secfull")
    code = user.make_dir({"a.py": "open('/hyperai/home/out.bin', 'wb').write(b'x' * 300_000)\n"})
    uid = user.pw.pw_uid
    root = User.__new__(User)
    root.name = "root"
    mounted = root.run("mount", "-t", "tmpfs", "-o", f"size=1m,uid={uid},gid={user.pw.pw_gid},mode=0700",
                       "tmpfs", str(user.storage), check=True)
    assert mounted.returncode == 0
    try:
        assert user.gear("run", "-c", "sec-big", "--code", str(code), "-f", "--", "python3", "a.py").returncode == 0
        user.run("bash", "-c", f"head -c 2000000 /dev/zero > {user.storage}/filler")   # ENOSPC, on purpose
        for args in (["ls"], ["status"], ["history", "sec-big"], ["show", "sec-big/1"]):
            result = user.gear(*args)
            assert "Traceback" not in result.stderr, (args, result.stderr)
        result = user.gear("delete", "sec-big", "--yes")
        assert result.returncode == 0, result.stderr
        assert "sec-big" not in user.gear("ls").stdout
        assert not (user.storage / "containers" / "sec-big").exists()
    finally:
        root.run("umount", str(user.storage))


def test_delete_on_a_full_disk_when_the_ledger_has_not_seen_the_end_yet():
    """An execution ended while nobody looked, then the storage filled up: its new status cannot be
    written, and `gear delete` (the way out) must still judge it ended and delete it."""
    import json
    import time

    user = User("secfull2")
    code = user.make_dir({"a.py": "open('/hyperai/home/out.bin', 'wb').write(b'x' * 200_000)\n"})
    root = User.__new__(User)
    root.name = "root"
    root.run("mount", "-t", "tmpfs", "-o", f"size=1m,uid={user.pw.pw_uid},gid={user.pw.pw_gid},mode=0700",
             "tmpfs", str(user.storage), check=True)
    try:
        submitted = user.gear("run", "-c", "sec-unseen", "--code", str(code), "--", "python3", "a.py")
        assert submitted.returncode == 0, submitted.stderr
        status = user.storage / "containers" / "sec-unseen" / "1" / "status.json"
        deadline = time.monotonic() + 120
        # The job's final record, read inside the cluster (the tmpfs is mounted there), by no gear command.
        while time.monotonic() < deadline:
            shown = user.run("cat", str(status))
            try:
                if shown.returncode == 0 and json.loads(shown.stdout).get("phase") == "final":
                    break
            except ValueError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the job wrote no final record")
        while time.monotonic() < deadline:   # ...and Slurm has let it go (not COMPLETING any more)
            states = user.run("squeue", "-h", "-o", "%T", "-u", user.name).stdout.split()
            if not any(state in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") for state in states):
                break
            time.sleep(0.5)
        user.run("bash", "-c", f"head -c 2000000 /dev/zero > {user.storage}/filler")   # ENOSPC, on purpose
        result = user.gear("delete", "sec-unseen", "--yes")
        assert result.returncode == 0, result.stderr
        assert user.run("test", "-e", str(user.storage / "containers" / "sec-unseen")).returncode != 0
        assert "sec-unseen" not in user.gear("ls").stdout
    finally:
        root.run("umount", str(user.storage))


PRINT_ENVIRONMENT = r'''
import json, os
print("ENV " + json.dumps({name: os.environ.get(name) for name in
                           ("SLURM_SUBMIT_DIR", "SLURM_JOB_ID", "GEAR_EXECUTION", "PYTHONPATH")}))
'''


def test_slurms_values_reach_the_program_as_they_are(mallory):
    """The directory `gear run` ran in (SLURM_SUBMIT_DIR in the job) named with $, `, " and \\: Apptainer
    evaluates the environment it is passed, so the job escapes Slurm's values. The program sees the name
    as it is, nothing in it ran, and the rest of the environment is there (one broken value would lose
    every variable)."""
    odd = 'sub $(touch pwned) `touch pwned2` "q" \\" end'
    base = mallory.make_dir({f"{odd}/env.py": PRINT_ENVIRONMENT})
    result = mallory.gear("run", "-c", "sec-env", "--code", ".", "-f", "--", "python3", "env.py", cwd=str(base / odd))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("ENV "))
    seen = json.loads(line[len("ENV "):])
    assert seen["SLURM_SUBMIT_DIR"] == str(base / odd)
    assert seen["SLURM_JOB_ID"] and seen["GEAR_EXECUTION"].startswith("sec-env/")
    assert seen["PYTHONPATH"] == "/opt/gear/python"
    assert not list(Path(mallory.pw.pw_dir).rglob("pwned*"))
    assert not list(mallory.storage.rglob("pwned*"))
