"""The Open OnDemand app (ood/): its ERB files rendered by real Ruby with
OnDemand's variables, and `gear ood-submit` (the adapter's sbatch) against a
fake sbatch. tests/cluster/test_ood_portal.py submits for real."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, gear, write_executable

APP = REPO / "ood"
HARNESS = REPO / "tests" / "ood_render.rb"
RUBY = shutil.which("ruby") or "ruby"
# This checkout's gear, next to the interpreter running the tests: never the
# `gear` or `python3` a PATH happens to hold.
GEAR = Path(sys.executable).with_name("gear")
pytestmark = pytest.mark.skipif(shutil.which("ruby") is None, reason="needs ruby (apt-get install ruby)")

FORM = {"compute_type": "cpu-small", "image": "jupyter", "container": "nb", "bindings": "", "bc_num_hours": "2"}


@pytest.fixture(autouse=True)
def jupyter_image_in_place(gear_env):
    """The Jupyter image is a placeholder too (no job starts here)."""
    image = gear_env["tmp"] / "jupyter.sif"
    image.write_text("placeholder image for tests that never start a job\n")
    images = gear_env["site"] / "images.yaml"
    images.write_text(images.read_text().replace("/var/lib/gear-devcluster/images/jupyter.sif", str(image)))


@pytest.fixture(autouse=True)
def gear_for_the_form(tmp_path, monkeypatch):
    """The form runs this checkout's gear (GEAR_OOD_GEAR); a `gear` or `python3`
    looked up on PATH is a decoy that fails, so no test depends on the machine's."""
    monkeypatch.setenv("GEAR_OOD_GEAR", str(GEAR))
    decoys = tmp_path / "decoy-bin"
    decoys.mkdir()
    for name in ("gear", "python3"):
        write_executable(decoys / name, f"#!/bin/sh\necho 'decoy {name} of PATH: use the project's own' >&2\nexit 97\n")
    monkeypatch.setenv("PATH", f"{decoys}:{os.environ['PATH']}")


def render_result(template: str, values: dict[str, str] | None = None,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUBY, str(HARNESS), str(APP / template), json.dumps(values or {})],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def render(template: str, values: dict[str, str] | None = None, env: dict[str, str] | None = None) -> str:
    result = render_result(template, values, env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def stage(tmp: Path, values: dict[str, str]) -> Path:
    """What OnDemand does before it submits: render template/ into the session's staged directory."""
    root = tmp / "ondemand" / "data" / "sys" / "dashboard" / "batch_connect" / "sys" / "gear-jupyter" / "output" / "s1"
    root.mkdir(parents=True)
    for template in (APP / "template").glob("*.erb"):
        (root / template.name.removesuffix(".erb")).write_text(render(f"template/{template.name}", values))
    return root


def ood_submit(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return gear("ood-submit", "-D", str(root), "-J", "sys/dashboard/sys/gear-jupyter", "-o",
                str(root / "output.log"), "-t", "02:00:00", "--export", "NONE", *extra, "--parsable")


def test_app_has_every_batch_connect_file():
    for name in ("manifest.yml", "form.yml.erb", "submit.yml.erb", "view.html.erb",
                 "template/before.sh.erb", "template/script.sh.erb", "template/gear-ood.json.erb"):
        assert (APP / name).is_file(), name
    assert yaml.safe_load((APP / "manifest.yml").read_text())["role"] == "batch_connect"


def test_form_offers_the_sites_types_and_images():
    form = yaml.safe_load(render("form.yml.erb"))
    assert form["form"] == ["compute_type", "image", "container", "bindings", "bc_num_hours"]
    attributes = form["attributes"]
    assert [value for _, value in attributes["compute_type"]["options"]] == ["cpu-small", "gpu-1", "gpu-2"]
    # Only the images that serve JupyterLab, the site's Jupyter image selected: a user who
    # only picks a compute type gets a session that starts (python has no `jupyter`).
    assert [value for _, value in attributes["image"]["options"]] == ["jupyter"]
    assert attributes["image"]["value"] == "jupyter"
    assert attributes["bc_num_hours"]["max"] == 4 and attributes["bindings"]["widget"] == "text_area"


def test_form_offers_the_images_the_site_names_for_jupyter(gear_env):
    site = gear_env["site"] / "site.yaml"
    assert "  images: [jupyter]\n" in site.read_text()
    site.write_text(site.read_text().replace("  images: [jupyter]\n", "  images: [python, jupyter]\n"))
    image = yaml.safe_load(render("form.yml.erb"))["attributes"]["image"]
    assert [value for _, value in image["options"]] == ["jupyter", "python"] and image["value"] == "jupyter"
    site.write_text(site.read_text().replace("images: [python, jupyter]", "images: [jupyter, ubuntu]"))
    result = render_result("form.yml.erb")
    assert result.returncode != 0 and "jupyter.images: 'ubuntu' is not one of the images" in result.stderr


def test_form_quotes_what_the_site_describes(gear_env):
    types = gear_env["site"] / "compute-types.yaml"
    types.write_text(types.read_text() + 'odd:\n  description: "a: b - c #d \\"e\\" {x} [y] &z"\n  partition: cpu\n'
                     '  cpus: 1\n  memory: 1G\n  time_limit: "1-00:00:00"\n')
    attributes = yaml.safe_load(render("form.yml.erb"))["attributes"]
    assert attributes["compute_type"]["options"][-1] == ['odd: a: b - c #d "e" {x} [y] &z (at most 1-00:00:00)', "odd"]
    assert attributes["bc_num_hours"]["max"] == 24


def test_form_fails_visibly_when_gear_cannot_run(tmp_path):
    # Not an empty select: the form's error names the command and the reason.
    missing = tmp_path / "no-such-gear"
    result = render_result("form.yml.erb", env={"GEAR_OOD_GEAR": str(missing)})
    assert result.returncode != 0 and result.stdout == ""
    assert f"`{missing} types --json` could not run: No such file or directory" in result.stderr
    result = render_result("form.yml.erb", env={"GEAR_OOD_GEAR": str(GEAR), "GEAR_SITE_CONFIG": str(tmp_path / "nope")})
    assert result.returncode != 0 and result.stdout == ""
    assert f"`{GEAR} types --json` failed: gear: error: site configuration directory" in result.stderr
    # Without GEAR_OOD_GEAR the form runs `gear` from the dashboard's PATH; none there is an error too.
    result = render_result("form.yml.erb", env={"GEAR_OOD_GEAR": "", "PATH": str(tmp_path)})
    assert result.returncode != 0 and "`gear types --json` could not run" in result.stderr


def test_submit_and_view():
    submit = yaml.safe_load(render("submit.yml.erb", {**FORM, "bc_num_hours": "3; rm -rf ~"}))
    assert submit == {"batch_connect": {"template": "basic"}, "script": {"wall_time": 3 * 3600}}
    view = render("view.html.erb", {"host": "c1.cluster.example.org", "port": "20001", "password": 'p"w&<x>'})
    # The password is posted to JupyterLab's login, never part of a URL (proxy logs, history).
    assert ('<form action="/node/c1.cluster.example.org/20001/login?next=%2Fnode%2Fc1.cluster.example.org%2F20001%2Flab"'
            ' method="post"') in view
    assert '<input type="hidden" name="password" value="p&quot;w&amp;&lt;x&gt;">' in view
    assert "token" not in view and "<x>" not in view and "href" not in view


def test_form_values_reach_gear_as_json_only(tmp_path):
    hostile = {**FORM, "container": "x; touch /tmp/pwned", "bindings": "mnist:input0\r\n$(touch /tmp/pwned)\n\n`id`\n",
               "image": "py\"thon'\nx"}
    root = stage(tmp_path, hostile)
    assert json.loads((root / "gear-ood.json").read_text()) == {
        "compute_type": "cpu-small", "image": "py\"thon'\nx", "container": "x; touch /tmp/pwned",
        "bindings": ["mnist:input0", "$(touch /tmp/pwned)", "`id`"], "hours": "2"}
    for script in ("script.sh", "before.sh"):
        text = (root / script).read_text()
        assert "pwned" not in text and "mnist" not in text
        assert subprocess.run(["bash", "-n", str(root / script)]).returncode == 0


def _nothing_created(gear_env, fake_slurm) -> None:
    assert [c for c in fake_slurm.calls() if c != "scontrol show config"] == []  # no job
    users = gear_env["storage"] / "users"
    assert not list(users.glob("*/containers/*")), list(users.rglob("*"))
    assert not list(users.glob("*/workspaces/token-*"))


@pytest.mark.parametrize("values,words", [
    ({"compute_type": "gpu-9000"}, "compute type 'gpu-9000' is not offered by this site's OnDemand form"),
    ({"compute_type": "cpu-small; touch /tmp/pwned"}, "is not offered by this site's OnDemand form"),
    ({"image": "ubuntu"}, "image 'ubuntu' is not offered"),
    ({"image": "python"}, "image 'python' is not offered by this site's OnDemand form: it does not serve JupyterLab"),
    ({"container": "x; touch /tmp/pwned"}, "container name"),
    ({"container": "../x"}, "container name"),
    ({"bc_num_hours": "5"}, "hours must be from 1 to 4 on cpu-small"),
    ({"bc_num_hours": "0"}, "hours must be from 1 to 4"),
    ({"bc_num_hours": "1; id"}, "expected a whole number"),
])
def test_bad_form_values_are_refused_and_nothing_is_created(gear_env, fake_slurm, values, words):
    fake_slurm("sbatch", "echo 99")
    root = stage(gear_env["tmp"], {**FORM, **values})
    result = ood_submit(root)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and result.stdout == ""
    _nothing_created(gear_env, fake_slurm)
    assert not (gear_env["tmp"] / "pwned").exists() and not Path("/tmp/pwned").exists()


def test_a_session_is_recorded_as_a_jupyter_execution(gear_env, fake_slurm):
    fake_slurm("sbatch", 'cat "${@: -1}" > "$(dirname "$0")/job.sh"; env > "$(dirname "$0")/env"; echo 4242')
    fake_slurm("squeue", "exit 0")
    fake_slurm("sacct", "exit 0")
    root = stage(gear_env["tmp"], {**FORM, "bindings": ""})
    result = subprocess.run(
        [str(GEAR), "ood-submit", "-D", str(root), "--export", "NONE", "--parsable"],
        input="#!/bin/bash\necho OnDemand's own script\n", capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "SBATCH_EXPORT": "NONE"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "4242\n"
    history = gear("history", "nb", "--json")
    assert history.returncode == 0, history.stderr
    (record,) = json.loads(history.stdout)
    assert record["mode"] == "jupyter" and record["compute_type"] == "cpu-small" and record["image"] == "jupyter"
    assert record["slurm_job_id"] == "4242" and record["id"] == "nb/1"
    assert (root / "gear-execution").read_text() == "nb/1\n"
    # OnDemand's script is kept, not run, and the session's log will say so.
    assert (root / "ondemand-script.sh").read_text() == "#!/bin/bash\necho OnDemand's own script\n"
    assert oct((root / "ondemand-script.sh").stat().st_mode & 0o777) == "0o600"
    assert "OnDemand's job script (kept as ondemand-script.sh" in (root / "gear-ood-notes").read_text()
    # OnDemand's output.log (sbatch -o) is the job's log.
    (exec_dir,) = gear_env["storage"].glob("users/*/containers/nb/1")
    assert os.readlink(root / "output.log") == str(exec_dir / "output.log")
    job = (fake_slurm.bin_dir / "job.sh").read_text()
    assert "#SBATCH --time=02:00:00" in job
    assert str(root / "script.sh") in job and "OnDemand's own script" not in job
    assert "SBATCH_EXPORT" not in (fake_slurm.bin_dir / "env").read_text()
    # Without --parsable, what sbatch prints.
    fake_slurm("sbatch", "echo 4243")
    (root / "gear-ood.json").write_text(json.dumps({**json.loads((root / "gear-ood.json").read_text())}))
    result = gear("ood-submit", "-D", str(root))
    assert result.returncode == 0 and result.stdout == "Submitted batch job 4243\n", result.stderr


def test_no_image_chosen_is_the_sites_jupyter_image(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 4244")
    fake_slurm("squeue", "exit 0")
    fake_slurm("sacct", "exit 0")
    root = stage(gear_env["tmp"], {**FORM, "image": ""})
    result = ood_submit(root)
    assert result.returncode == 0, result.stderr
    assert json.loads(gear("history", "nb", "--json").stdout)[0]["image"] == "jupyter"


def test_refusal_is_one_line_the_portal_can_show(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 99")
    result = ood_submit(stage(gear_env["tmp"], {**FORM, "image": "python"}))
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    _nothing_created(gear_env, fake_slurm)


@pytest.mark.parametrize("extra,words", [
    (["-M", "other"], "sbatch --clusters other: gear submits to its own Slurm cluster (gear-test)"),
    (["--constraint=bigmem", "-A", "proj", "-p", "gpu"], "sbatch --constraint, --account, --partition (from the "
     "site's OnDemand settings: submit.yml `native`"),
    (["--hold"], "sbatch --hold (from"),
])
def test_sbatch_arguments_gear_cannot_honour_are_refused(gear_env, fake_slurm, extra, words):
    fake_slurm("sbatch", "echo 99")
    fake_slurm("scontrol", 'echo "ClusterName             = gear-test"')
    root = stage(gear_env["tmp"], FORM)
    result = ood_submit(root, *extra)
    assert result.returncode == 2 and result.stdout == ""
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    _nothing_created(gear_env, fake_slurm)
    assert not (root / "gear-ood-notes").exists()


def test_sbatch_arguments_gear_does_not_follow_are_noted_in_the_log(gear_env, fake_slurm, tmp_path):
    fake_slurm("sbatch", "echo 4245")
    fake_slurm("squeue", "exit 0")
    fake_slurm("sacct", "exit 0")
    root = stage(gear_env["tmp"], FORM)
    fake_slurm("scontrol", 'echo "ClusterName             = gear-test"')
    # As OnDemand 4's adapter orders them: --parsable, then -M CLUSTER (its `cluster:`), here gear's own.
    result = gear("ood-submit", "-D", str(root), "-t", "05:00:00", "--mail-type", "NONE", "--export", "FOO,BAR",
                  "-e", "err.log", "--parsable", "-M", "gear-test")
    assert result.returncode == 0 and result.stdout == "4245\n", result.stderr
    assert (root / "gear-ood-notes").read_text().splitlines() == [
        "sbatch --time 05:00:00 ignored: the time limit is the form's 2 h",
        "sbatch --export variables ignored: gear's job sets the workspace's environment",
        "sbatch --error err.log ignored: the job's one log is output.log"]
    # script.sh prints them into the session's log when the job starts.
    script = run_script(root, "exit 3\n", tmp_path)
    out, _ = script.communicate(timeout=30)
    assert "gear-ood: note: sbatch --time 05:00:00 ignored: the time limit is the form's 2 h" in out


def test_other_sessions_go_to_the_real_sbatch_unchanged(gear_env, fake_slurm, tmp_path):
    fake_slurm("sbatch", 'echo "stdin: $(cat)"; echo 77')
    other = tmp_path / "other-app"
    other.mkdir()
    result = subprocess.run([str(GEAR), "ood-submit", "-D", str(other), "-J", "x", "--parsable"],
                            input="#!/bin/bash\nhostname\n", capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stdin: #!/bin/bash\nhostname\n77\n"
    assert fake_slurm.calls() == [f"sbatch -D {other} -J x --parsable"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_script(root: Path, payload: str, tmp: Path) -> subprocess.Popen[str]:
    """script.sh as gear's job runs it (inside the image): `bash script.sh PAYLOAD ARGS…`, with
    JUPYTER_PORT and JUPYTER_TOKEN. The payload stands in for JupyterLab (fault injection)."""
    program = tmp / "payload"
    write_executable(program, "#!/bin/bash\n" + payload)
    return subprocess.Popen(["bash", str(root / "script.sh"), str(program), "lab", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "JUPYTER_PORT": str(_free_port()),
                                 "JUPYTER_TOKEN": "tok-1", "GEAR_EXECUTION": "nb/1"})


def test_connection_yml_is_written_only_once_the_port_answers(tmp_path):
    root = stage(tmp_path, FORM)
    # Listens 3 s after it starts, as JupyterLab does; its arguments are recorded.
    payload = (f'echo "$@" > {tmp_path}/args; sleep 3\n'
               f'exec {sys.executable} -m http.server --bind 127.0.0.1 "$JUPYTER_PORT"\n')
    script = run_script(root, payload, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not (root / "connection.yml").exists():
            assert script.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        connection = yaml.safe_load((root / "connection.yml").read_text())
        port = int(connection["port"])
        assert _answers(port), "connection.yml before the port answered"
        assert connection["password"] == "tok-1"
        assert oct((root / "connection.yml").stat().st_mode & 0o777) == "0o600"
        args = (tmp_path / "args").read_text().split()
        assert args[:2] == ["lab", "--no-browser"]
        assert f"--ServerApp.base_url=/node/{connection['host']}/{port}/" in args
        assert script.poll() is None
    finally:
        script.terminate()
        out, _ = script.communicate(timeout=30)
    assert "connection.yml written" in out


@pytest.mark.parametrize("payload,status,words", [
    ("echo 'exec: jupyter: not found' >&2; exit 127\n", 127, "JupyterLab ended (exit status 127) before it listened"),
    ("exit 0\n", 1, "JupyterLab ended (exit status 0) before it listened"),
])
def test_a_jupyterlab_that_never_listens_leaves_no_connection_yml(tmp_path, payload, status, words):
    root = stage(tmp_path, FORM)
    script = run_script(root, payload, tmp_path)
    out, _ = script.communicate(timeout=30)
    assert script.returncode == status, out
    assert words in out and "no connection.yml" in out
    assert not (root / "connection.yml").exists()


def test_a_session_stopped_before_it_listens_says_so(tmp_path):
    root = stage(tmp_path, FORM)
    script = run_script(root, "exec sleep 60\n", tmp_path)
    time.sleep(1.5)
    script.terminate()  # gear's job: JupyterLab did not listen within start_timeout
    out, _ = script.communicate(timeout=30)
    assert "stopped before JupyterLab listened" in out and script.returncode != 0
    assert not (root / "connection.yml").exists()


@pytest.mark.parametrize("hostname,host", [
    ('[ "$1" = -f ] && echo c7.cluster.example.org || echo c7\n', "c7.cluster.example.org"),
    ('[ "$1" = -f ] && exit 1 || echo c7\n', "c7"),
    ('[ "$1" = -f ] && echo localhost || echo c7\n', "c7"),
])
def test_the_host_is_the_nodes_full_name(tmp_path, hostname, host):
    root = stage(tmp_path, FORM)
    result = subprocess.run(["bash", "-c", f'source {root / "before.sh"}; echo "$host"'], capture_output=True,
                            text=True, env={**os.environ, "PATH": _fake_path(tmp_path, hostname),
                                            "JUPYTER_PORT": "1", "JUPYTER_TOKEN": "t"})
    assert result.returncode == 0 and result.stdout.strip() == host, result.stderr


def _fake_path(tmp: Path, hostname: str) -> str:
    fake = tmp / "hostname-bin"
    fake.mkdir(exist_ok=True)
    write_executable(fake / "hostname", "#!/bin/bash\n" + hostname)
    return f"{fake}:{os.environ['PATH']}"
