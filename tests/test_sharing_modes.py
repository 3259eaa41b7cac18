"""storage/sharing.py and the names of shared things, without a cluster (the cluster tests,
tests/cluster/test_sharing.py, check the same rules with three real users)."""

from __future__ import annotations

import grp
import os
import stat

import pytest

from gear_hpc.base.errors import GearError, UsageError
from gear_hpc.base.names import parse_shared_id
from gear_hpc.data import bindings
from gear_hpc.storage import sharing


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_an_index_appears_whole_with_its_mode_and_nothing_else_is_left(tmp_path):
    tmp_path = tmp_path / "index"
    tmp_path.mkdir()
    path = tmp_path / "closed.json"
    sharing.write_index(path, {"format": sharing.INDEX_FORMAT, "executions": [1]})
    assert mode(path) == 0o644 and os.listdir(tmp_path) == ["closed.json"]
    assert sharing.read_index(str(path)) == {"format": 1, "executions": [1]}
    sharing.write_index(path, {"format": sharing.INDEX_FORMAT, "executions": [1, 2]}, mode=0o640)
    assert mode(path) == 0o640 and sharing.read_index(str(path))["executions"] == [1, 2]


def test_a_failed_index_write_leaves_the_old_one(tmp_path):
    tmp_path = tmp_path / "index"
    tmp_path.mkdir()
    path = tmp_path / "public.json"
    sharing.write_index(path, {"format": sharing.INDEX_FORMAT, "containers": []})
    with pytest.raises(TypeError):
        sharing.write_index(path, {"format": sharing.INDEX_FORMAT, "containers": [object()]})
    assert sharing.read_index(str(path)) == {"format": 1, "containers": []}
    assert os.listdir(tmp_path) == ["public.json"]


def test_what_a_reader_may_not_read_and_what_is_missing_look_the_same(tmp_path):
    assert sharing.read_index(str(tmp_path / "missing.json")) is None
    assert sharing.read_index(str(tmp_path / "no-dir" / "x.json")) is None
    target = tmp_path / "elsewhere.json"
    sharing.write_index(target, {"format": sharing.INDEX_FORMAT})
    (tmp_path / "link.json").symlink_to(target)
    assert sharing.read_index(str(tmp_path / "link.json")) is None   # an index is never read through a link


@pytest.mark.parametrize("text, message", [("{not json", "not a valid index"), ('[1]', "not a valid index"),
                                           ('{"format": 99}', "format 99")])
def test_a_broken_index_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(GearError, match=message):
        sharing.read_index(str(path))


def test_a_gate_is_one_mode(tmp_path):
    gate = tmp_path / "c"
    gate.mkdir(mode=0o700)
    sharing.set_gate(gate, sharing.PUBLIC)
    assert mode(gate) == 0o711
    gid = os.getgid()
    sharing.set_gate(gate, sharing.GROUP, gid)
    assert mode(gate) == 0o710 and gate.stat().st_gid == gid
    sharing.set_gate(gate, sharing.PRIVATE)
    assert mode(gate) == 0o700


def test_a_closed_execution_opens_its_log_code_and_directory_but_not_gears_own_files(tmp_path):
    exec_dir = tmp_path / "1"
    (exec_dir / "code" / "sub").mkdir(parents=True)
    for name in ("output.log", "gear_params.json", "job.sh", "status.json"):
        (exec_dir / name).write_text("x")
        os.chmod(exec_dir / name, 0o600)
    (exec_dir / "code" / "run.sh").write_text("x")
    os.chmod(exec_dir / "code" / "run.sh", 0o700)
    (exec_dir / "code" / "link").symlink_to("/etc/passwd")
    os.chmod(exec_dir / "code" / "sub", 0o700)
    os.chmod(exec_dir, 0o700)
    sharing.open_closed_execution(exec_dir)
    assert mode(exec_dir) == 0o755 and mode(exec_dir / "code" / "sub") == 0o755
    assert mode(exec_dir / "output.log") == 0o644 and mode(exec_dir / "gear_params.json") == 0o644
    assert mode(exec_dir / "code" / "run.sh") == 0o755
    assert mode(exec_dir / "job.sh") == 0o600 and mode(exec_dir / "status.json") == 0o600


def test_groups_are_checked_before_anything_is_shared():
    with pytest.raises(UsageError, match="not a group name"):
        sharing.member_group("../x")
    with pytest.raises(UsageError, match="there is no group"):
        sharing.member_group("gear-no-such-group")
    mine = grp.getgrgid(os.getgid()).gr_name
    assert sharing.member_group(mine) == os.getgid()


@pytest.mark.parametrize("text, with_number, expected", [
    ("c/3", True, (None, "c", 3)),
    ("alice/c/3", True, ("alice", "c", 3)),
    ("c", False, (None, "c", None)),
    ("alice/c", False, ("alice", "c", None)),
])
def test_shared_ids(text, with_number, expected):
    assert parse_shared_id(text, with_number) == expected


@pytest.mark.parametrize("text, with_number", [("Alice/c/3", True), ("alice/c/0", True), ("a/b/c/3", True),
                                               ("alice/../3", True), ("-x/c", False), ("alice/c/d", False)])
def test_bad_shared_ids_are_refused(text, with_number):
    with pytest.raises(UsageError):
        parse_shared_id(text, with_number)


def test_another_users_execution_can_be_copied_into_home_but_a_dataset_cannot():
    spec = bindings.parse("alice/c/3:/hyperai/home")
    assert (spec.owner, spec.container, spec.number, spec.target) == ("alice", "c", 3, "/hyperai/home")
    with pytest.raises(UsageError, match="only an execution's working directory"):
        bindings.parse("alice/mnist@2:/hyperai/home")


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, -3e5, true, false, null, "x\\u00e9\\n\\"q"], "b": {}}', "[]",
                                  ' {"format": 1} \n', '"s"', "1", '[1e999, -0.0, 12345678901234567890]',
                                  '{"k": "\\ud83d\\ude00", "k": 2}'])
def test_the_fast_json_reader_reads_what_json_reads(text):
    import json

    from gear_hpc.base.quick_json import loads as _loads

    assert _loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["{", '{"a":1} x', "", "[1,]", "{'a':1}", "   ", "nul"])
def test_the_fast_json_reader_refuses_what_json_refuses(text):
    from gear_hpc.base.quick_json import loads as _loads

    with pytest.raises(ValueError):
        _loads(text)


def test_gear_share_repairs_what_closing_left_undone_and_walks_nothing_that_is_done(gear_env, monkeypatch):
    """publish_container seals and opens a closed execution only where that did not run to its end."""
    from pathlib import Path

    from gear_hpc.containers import sharing as container_sharing
    from gear_hpc.executions import sealing
    from gear_hpc.ledger.db import Ledger
    from gear_hpc.storage.disk import UserStorage

    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    homes = []
    with Ledger(storage.ledger_path) as ledger:
        for _ in range(3):
            def make_home(number: int) -> Path:
                home = storage.execution_dir("shr", number) / "home"
                (home / "sub").mkdir(parents=True, mode=0o700)
                (home / "sub" / "result.txt").write_text("42")
                os.chmod(home / "sub" / "result.txt", 0o600)
                os.chmod(home, 0o700)
                os.chmod(home.parent, 0o700)   # as gear makes it: private until closed and opened
                return home

            number = ledger.allocate_execution("shr", make_home, mode="script", status="completed",
                                               compute_type="cpu-small", image="python", command=["true"],
                                               params={}, bindings=[], token=f"t{len(homes)}")
            homes.append(storage.execution_dir("shr", number) / "home")
        sealing.seal(homes[0])
        sharing.open_closed_execution(homes[0].parent)   # closed as gear closes: done
        sealing.seal(homes[1])                              # opened: not yet (it failed)
        os.chmod(homes[1], 0o755)                          # the seal cut short before its top
        assert sealing.finished(homes[0]) and not sealing.finished(homes[1]) and not sealing.finished(homes[2])
        assert sharing.execution_opened(homes[0].parent) and not sharing.execution_opened(homes[1].parent)

        walked = []
        real_seal, real_open = sealing.seal, sharing.open_closed_execution
        monkeypatch.setattr(sealing, "seal", lambda home: walked.append(("seal", home.parent.name)) or real_seal(home))
        monkeypatch.setattr(sharing, "open_closed_execution",
                            lambda d: walked.append(("open", d.name)) or real_open(d))
        container_sharing.publish_container(ledger, "shr")
        assert sorted(walked) == [("open", "2"), ("open", "3"), ("seal", "2"), ("seal", "3")]
        for home in homes:
            assert sealing.finished(home) and sharing.execution_opened(home.parent)
            assert mode(home / "sub" / "result.txt") == 0o444
        walked.clear()
        container_sharing.publish_container(ledger, "shr")   # all done: nothing walked again
        assert walked == []
