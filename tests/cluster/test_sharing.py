"""Sharing on the real cluster, with three ordinary users: the owner, a member of the owner's
group, and an outsider who tries everything, through gear and around it (ls, cat, find,
sqlite3 on the storage root). The kernel is what refuses; gear says so in one line.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import SCRIPT, STORAGE_ROOT, User

GROUP = "shr-team"
RUN = uuid.uuid4().hex[:6]   # the users persist between runs: names of this run's own


def c(visibility: str) -> str:
    return f"shr-{visibility}-{RUN}"


def d(visibility: str) -> str:
    return f"shrd-{visibility}-{RUN}"
WRITE = r'''
import os
open("result.txt", "w").write("the answer\n")
fd = os.open("secret-mode.txt", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"written 0600\n")
os.close(fd)
print("ran", flush=True)
'''


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gear: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def raw(user: User, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command as `user` on this host, straight on the storage root: no gear in between."""
    return subprocess.run(["runuser", "-u", user.name, "--", *argv], capture_output=True, text=True, timeout=60)


def denied(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and ("Permission denied" in result.stderr or "unable to open" in result.stderr)


@pytest.fixture(scope="module")
def owner() -> User:
    return User("shr_owner")


@pytest.fixture(scope="module")
def member() -> User:
    return User("shr_member")


@pytest.fixture(scope="module")
def outsider() -> User:
    return User("shr_outsider")


@pytest.fixture(scope="module")
def shared(owner, member, outsider) -> dict[str, str]:
    """The owner's containers and datasets: one public, one shared with GROUP, one private,
    each with a closed execution; the public one also has an open one."""
    subprocess.run(["bash", str(SCRIPT), "group", GROUP, owner.name, member.name], check=True, capture_output=True)
    code = owner.make_dir({"write.py": WRITE})
    names = {}
    for visibility in ("public", "group", "private"):
        container = c(visibility)
        result = owner.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "write.py")
        assert result.returncode == 0, result.stderr
        names[visibility] = result.stdout.split()[-1]
        data = owner.make_dir({"a.txt": f"{visibility} data\n"})
        owner.gear("data", "create", d(visibility), check=True)
        owner.gear("data", "upload", d(visibility), str(data), check=True)
    for base, name in ((["share"], c), (["data", "share"], d)):
        owner.gear(*base, name("public"), "--public", check=True)
        owner.gear(*base, name("group"), "--group", GROUP, check=True)
    running = owner.gear("run", "-c", c("public"), "--code", str(code), "--", "bash", "-c",
                         "echo open-secret > open.txt; echo open-log; sleep 600")
    assert running.returncode == 0, running.stderr
    names["open"] = running.stdout.split()[-1]
    # Closed to others from the moment it exists (queued, syncing, running, saving alike).
    assert denied(raw(outsider, "ls", str(owner.storage / "containers" / names["open"])))
    owner.wait_for(names["open"], {"running"})
    yield names
    owner.gear("stop", names["open"])


def test_the_owner_sees_visibility_and_group(owner, shared):
    listed = {c["name"]: c for c in owner.gear_json("ls")}
    assert (listed[c("public")]["visibility"], listed[c("public")]["group"]) == ("public", None)
    assert (listed[c("group")]["visibility"], listed[c("group")]["group"]) == ("group", GROUP)
    assert (listed[c("private")]["visibility"], listed[c("private")]["group"]) == ("private", None)
    table = owner.gear("ls", check=True).stdout
    assert "VISIBILITY" in table and "GROUP" in table and GROUP in table
    datasets = {d["name"]: d for d in owner.gear_json("data", "ls")}
    assert (datasets[d("group")]["visibility"], datasets[d("group")]["group"]) == ("group", GROUP)


@pytest.mark.parametrize("reader_name, sees", [("member", {"public", "group"}), ("outsider", {"public"})])
def test_gear_ls_of_another_user_lists_what_is_shared_with_the_reader(request, owner, shared, reader_name, sees):
    reader: User = request.getfixturevalue(reader_name)
    found = reader.gear_json("ls", f"{owner.name}/")
    assert {x["name"] for x in found["containers"]} >= {c(v) for v in sees}
    assert not {x["name"] for x in found["containers"]} & {c(v) for v in {"public", "group", "private"} - sees}
    assert {x["name"] for x in found["datasets"]} >= {d(v) for v in sees}
    assert not {x["name"] for x in found["datasets"]} & {d(v) for v in {"public", "group", "private"} - sees}
    public = next(x for x in found["containers"] if x["name"] == c("public"))
    # Closed executions only: the running one is not counted.
    assert public["executions"] == 1 and public["last_number"] == 1 and public["visibility"] == "public"
    assert "group" in public
    text = reader.gear("ls", f"{owner.name}/", check=True).stdout
    assert f"{owner.name}/{c('public')}" in text and (f"{owner.name}/{c('group')}" in text) == ("group" in sees)


@pytest.mark.parametrize("visibility", ["public", "group", "private"])
@pytest.mark.parametrize("reader_name", ["member", "outsider"])
def test_each_command_on_a_closed_execution(request, owner, shared, visibility, reader_name):
    reader: User = request.getfixturevalue(reader_name)
    allowed = visibility == "public" or (visibility == "group" and reader_name == "member")
    ident = f"{owner.name}/{shared[visibility]}"
    container = ident.rsplit("/", 1)[0]
    work = reader.make_dir({})
    results = {
        "history": reader.gear("history", container, "--json"),
        "show": reader.gear("show", ident, "--json"),
        "logs": reader.gear("logs", ident),
        "download": reader.gear("download", ident, "-t", "got", cwd=str(work)),
    }
    if allowed:
        assert [e["id"] for e in json.loads(results["history"].stdout)] == [ident]
        record = json.loads(results["show"].stdout)
        assert record["status"] == "completed" and record["id"] == ident and "token" not in record
        assert results["logs"].stdout.strip().endswith("ran")
        assert results["download"].returncode == 0, results["download"].stderr
        assert (work / "got" / "result.txt").read_text() == "the answer\n"
        assert (work / "got" / "secret-mode.txt").read_text() == "written 0600\n"
    else:
        for name, result in results.items():
            assert "is not shared with you" in one_line_error(result), name
        assert not (work / "got").exists()


def test_an_open_execution_of_a_public_container_is_invisible(owner, member, outsider, shared):
    ident = f"{owner.name}/{shared['open']}"
    for reader in (member, outsider):
        assert ident not in [e["id"] for e in reader.gear_json("history", f"{owner.name}/{c('public')}")]
        for command in (["show", ident], ["logs", ident], ["download", ident, "-t", "x"]):
            assert "is not shared with you" in one_line_error(reader.gear(*command, cwd=str(reader.make_dir({}))))
        exec_dir = STORAGE_ROOT / "users" / owner.name / "containers" / shared["open"]
        for argv in (["ls", str(exec_dir)], ["cat", str(exec_dir / "output.log")],
                     ["cat", str(exec_dir / "home" / "open.txt")], ["find", str(exec_dir)]):
            result = raw(reader, *argv)
            assert denied(result) and "open-secret" not in result.stdout and "open-log" not in result.stdout, argv


@pytest.mark.parametrize("reader_name", ["member", "outsider"])
def test_around_gear_the_kernel_refuses_what_is_private(request, owner, shared, reader_name):
    reader: User = request.getfixturevalue(reader_name)
    root = STORAGE_ROOT / "users" / owner.name
    ledger = root / "ledger.sqlite"
    private = root / "containers" / c("private")
    refused = [
        ["ls", str(root)],                                   # the user's directory: pass, never list
        ["ls", str(root / "containers")],                    # nor the list of containers
        ["cat", str(ledger)],
        ["sqlite3", f"file:{ledger}?mode=ro", "SELECT * FROM executions"],
        ["ls", str(root / "notify")],
        ["cat", str(root / "notify" / "settings.json")],
        ["ls", str(private)],
        ["cat", str(private / "closed.json")],
        ["cat", str(private / "1" / "output.log")],
        ["cat", str(private / "1" / "home" / "result.txt")],
        ["ls", str(root / "datasets" / d("private"))],
        ["cat", str(root / "datasets" / d("private") / "versions" / "1" / "a.txt")],
        ["ls", str(root / "shared")],
        ["cat", str(root / "containers" / c("public") / "1" / "job.sh")],   # gear's own, never shared
    ]
    if reader_name == "outsider":
        group = root / "containers" / c("group")
        refused += [["ls", str(group)], ["cat", str(group / "closed.json")],
                    ["cat", str(group / "1" / "home" / "result.txt")],
                    ["cat", str(root / "shared" / f"group-{GROUP}.json")],
                    ["cat", str(root / "datasets" / d("group") / "versions" / "1" / "a.txt")]]
    for argv in refused:
        result = raw(reader, *argv)
        assert denied(result), (argv, result)
    result = raw(reader, "find", str(root))
    assert "result.txt" not in result.stdout and "ledger.sqlite" not in result.stdout
    # What is shared is readable by hand too (with the same paths gear reads).
    allowed = [root / "containers" / c("public") / "1" / "home" / "result.txt",
               root / "containers" / c("public") / "1" / "output.log",
               root / "datasets" / d("public") / "versions" / "1" / "a.txt"]
    if reader_name == "member":
        allowed.append(root / "containers" / c("group") / "1" / "home" / "result.txt")
    for path in allowed:
        assert raw(reader, "cat", str(path)).returncode == 0, path


def test_a_run_binds_another_users_output_and_dataset(owner, member, outsider, shared):
    pub = f"{owner.name}/{shared['public']}"
    code = outsider.make_dir({"noop.txt": ""})
    result = outsider.gear("run", "-c", "shr-reader", "--code", str(code), "-d", f"{pub}:input2",
                           "-d", f"{owner.name}/{d('public')}@1:input1", "-f", "--", "bash", "-c",
                           "cat /hyperai/input/input2/result.txt /hyperai/input/input1/a.txt;"
                           " touch /hyperai/input/input2/x 2>/dev/null && echo WROTE || echo read-only")
    assert result.returncode == 0, result.stderr
    ident = result.stdout.split()[-1]
    log = outsider.gear("logs", ident, check=True).stdout
    assert "the answer" in log and "public data" in log and "read-only" in log and "WROTE" not in log
    bindings = {b["target"]: b["source"] for b in outsider.gear_json("show", ident)["bindings"]}
    assert bindings["/hyperai/input/input2"] == pub and bindings["/hyperai/input/input1"] == f"{owner.name}/{d('public')}@1"

    # A copy as the new working directory: writable, and the owner's stays as it was.
    before = (STORAGE_ROOT / "users" / owner.name / "containers" / shared["public"] / "home" / "result.txt")
    result = member.gear("run", "-c", "shr-copy", "--code", str(member.make_dir({"n.txt": ""})), "-d",
                         f"{pub}:/hyperai/home", "-f", "--", "bash", "-c", "echo mine >> result.txt; cat result.txt")
    assert result.returncode == 0, result.stderr
    assert "the answer\nmine" in member.gear("logs", result.stdout.split()[-1], check=True).stdout
    assert before.read_text() == "the answer\n"


@pytest.mark.parametrize("spec", ["{o}/{group}:input0", "{o}/{dgroup}@1:input0", "{o}/{dprivate}:input0",
                                  "{o}/{private}:/hyperai/home", "{o}/{open}:input0"])
def test_binding_what_is_not_shared_is_refused_and_creates_nothing(owner, outsider, shared, spec):
    text = spec.format(o=owner.name, dgroup=d("group"), dprivate=d("private"), **shared)
    before = outsider.gear_json("ls")
    result = outsider.gear("run", "-c", "shr-refused", "--code", str(outsider.make_dir({"n": ""})), "-d", text,
                           "--", "true")
    assert "not shared with you" in one_line_error(result)
    assert outsider.gear_json("ls") == before
    assert not (outsider.storage / "containers" / "shr-refused").exists()


def test_continue_is_for_ones_own_executions(owner, member, shared):
    before = member.gear_json("ls")
    result = member.gear("continue", f"{owner.name}/{shared['public']}", "--", "true")
    message = one_line_error(result)
    assert result.returncode == 2 and "for your own executions" in message and ":/hyperai/home" in message
    assert member.gear_json("ls") == before


def test_going_private_revokes_at_once_and_sharing_again_restores(owner, member, outsider, shared):
    ident = f"{owner.name}/{shared['public']}"
    home = STORAGE_ROOT / "users" / owner.name / "containers" / shared["public"] / "home"
    assert raw(outsider, "cat", str(home / "result.txt")).returncode == 0
    owner.gear("share", c("public"), "--private", check=True)
    try:
        assert denied(raw(outsider, "cat", str(home / "result.txt")))
        assert "is not shared with you" in one_line_error(outsider.gear("show", ident))
        assert c("public") not in [x["name"] for x in outsider.gear_json("ls", f"{owner.name}/")["containers"]]
        # Moving a group share to another group also leaves the old group out at once.
        owner.gear("share", c("group"), "--group", owner.name, check=True)
        assert "is not shared with you" in one_line_error(member.gear("show", f"{owner.name}/{shared['group']}"))
    finally:
        owner.gear("share", c("public"), "--public", check=True)
        owner.gear("share", c("group"), "--group", GROUP, check=True)
    assert raw(outsider, "cat", str(home / "result.txt")).returncode == 0
    assert member.gear_json("show", f"{owner.name}/{shared['group']}")["status"] == "completed"


def test_an_execution_that_closes_appears_to_readers(owner, outsider, shared):
    code = owner.make_dir({"n": ""})
    result = owner.gear("run", "-c", c("public"), "--code", str(code), "-f", "--", "bash", "-c", "echo late")
    assert result.returncode == 0, result.stderr
    ident = result.stdout.split()[-1]
    assert f"{owner.name}/{ident}" in [e["id"] for e in outsider.gear_json("history", f"{owner.name}/{c('public')}")]
    assert "late" in outsider.gear("logs", f"{owner.name}/{ident}", check=True).stdout


@pytest.mark.parametrize("argv, message", [
    (["share", "shr-nosuch", "--public"], "you have no container 'shr-nosuch'"),
    (["share", c("public"), "--group", "root"], "not a member of group 'root'"),
    (["share", c("public"), "--group", "no-such-group"], "there is no group 'no-such-group'"),
    (["share", c("public")], "--public, --group GROUP or --private"),
    (["share", c("public"), "--public", "--group", GROUP], "choose one of"),
    (["share", "../x", "--public"], "invalid container name"),
    (["data", "share", "shrd-nosuch", "--public"], "you have no dataset 'shrd-nosuch'"),
    (["ls", "Bad-User/"], "is not a user name"),
    (["history", "shr_nobody/c"], "is not shared with you"),
])
def test_bad_sharing_input_is_one_line_and_changes_nothing(owner, shared, argv, message):
    before = owner.gear_json("ls")
    assert message in one_line_error(owner.gear(*argv))
    assert owner.gear_json("ls") == before


def test_a_running_execution_keeps_what_it_bound_when_access_is_taken_back(owner, member, shared):
    """Documented in docs/cli.md: a bind made at the job's start is not undone by a later chmod."""
    ident = f"{owner.name}/{shared['group']}"
    started = member.gear("run", "-c", "shr-bound", "--code", str(member.make_dir({"n": ""})), "-d",
                          f"{ident}:input0", "--", "bash", "-c",
                          "while [ ! -e /hyperai/home/go ]; do sleep 0.5; done; cat /hyperai/input/input0/result.txt")
    assert started.returncode == 0, started.stderr
    mine = started.stdout.split()[-1]
    assert member.wait_for(mine, {"running"})["status"] == "running"
    owner.gear("share", c("group"), "--private", check=True)
    try:
        work = Path(member.gear_json("show", mine)["workdir"])
        member.run("touch", str(work / "go"), check=True)
        assert member.wait_for(mine, {"completed", "failed"})["status"] == "completed"
        assert "the answer" in member.gear("logs", mine, check=True).stdout
        # A new binding is refused at once.
        assert "not shared with you" in one_line_error(
            member.gear("run", "--code", str(member.make_dir({"n": ""})), "-d", f"{ident}:input0", "--", "true"))
    finally:
        owner.gear("share", c("group"), "--group", GROUP, check=True)


def test_dataset_versions_of_another_user(owner, member, outsider, shared):
    versions = member.gear_json("data", "versions", f"{owner.name}/{d('group')}")
    assert [v["version"] for v in versions] == [1] and versions[0]["files"] == 1
    assert "not shared with you" in one_line_error(outsider.gear("data", "versions", f"{owner.name}/{d('group')}"))
    assert "not shared with you" in one_line_error(member.gear("data", "versions", f"{owner.name}/{d('private')}"))


def test_deleting_a_shared_container_or_dataset_closes_it_first(owner, outsider):
    code = owner.make_dir({"write.py": WRITE})
    container, dataset = f"shr-gone-{RUN}", f"shrd-gone-{RUN}"
    owner.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "write.py", check=True)
    owner.gear("data", "create", dataset, check=True)
    owner.gear("data", "upload", dataset, str(owner.make_dir({"a.txt": "x"})), check=True)
    owner.gear("share", container, "--public", check=True)
    owner.gear("data", "share", dataset, "--public", check=True)
    listed = outsider.gear_json("ls", f"{owner.name}/")
    assert container in [x["name"] for x in listed["containers"]] and dataset in [x["name"] for x in listed["datasets"]]
    owner.gear("delete", container, "--yes", check=True)
    owner.gear("data", "rm", dataset, check=True)
    listed = outsider.gear_json("ls", f"{owner.name}/")
    assert container not in [x["name"] for x in listed["containers"]]
    assert dataset not in [x["name"] for x in listed["datasets"]]
    assert "not shared with you" in one_line_error(outsider.gear("history", f"{owner.name}/{container}"))
    assert not (owner.storage / "containers" / container).exists()
