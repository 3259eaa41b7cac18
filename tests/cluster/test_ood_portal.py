"""The Open OnDemand app on the real local cluster, as alice: its ERB files
rendered by real Ruby with OnDemand's variables, the session submitted through
`gear ood-submit` (what the adapter's sbatch is), JupyterLab reached under
OnDemand's proxy path with the password from connection.yml."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ARTIFACTS, address_of, compute_nodes

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "ood"
RUBY = shutil.which("ruby")
# The form runs this checkout's gear (on the host, against the repository's
# site configuration), never whatever `gear` the PATH holds.
GEAR = Path(sys.executable).with_name("gear")
# The session is reached as the portal reaches it: from the login node's network, at the node's address.
pytestmark = [pytest.mark.skipif(RUBY is None, reason="needs ruby (apt-get install ruby)"),
              pytest.mark.usefixtures("login_network")]


def render(template: str, values: dict[str, str]) -> str:
    result = subprocess.run([str(RUBY), str(REPO / "tests" / "ood_render.rb"), str(APP / template), json.dumps(values)],
                            capture_output=True, text=True, env={**os.environ, "GEAR_SITE_CONFIG": str(REPO / "site-config"),
                                 "GEAR_OOD_GEAR": str(GEAR)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def stage(alice, values: dict[str, str]) -> Path:
    """What OnDemand does: render template/ into the session's staged directory (the user's)."""
    files = {t.name.removesuffix(".erb"): render(f"template/{t.name}", values) for t in (APP / "template").glob("*.erb")}
    return alice.make_dir(files)


def submit(alice, root: Path, *cluster: str):  # type: ignore[no-untyped-def]
    # As OnDemand 4's Slurm adapter runs sbatch: its script on stdin, --parsable, then
    # -M CLUSTER when the cluster's adapter names one.
    return alice.run("bash", "-c", 'printf "#!/bin/bash\\necho ondemand script\\n" | gear ood-submit "$@"', "sbatch",
                     "-D", str(root), "-J", "sys/dashboard/sys/gear-jupyter", "-o", str(root / "output.log"),
                     "-t", "01:00:00", "--export", "NONE", "--parsable", *cluster, timeout=120)


def cluster_name(alice) -> str:  # type: ignore[no-untyped-def]
    config = alice.run("scontrol", "show", "config", check=True).stdout
    return next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("ClusterName"))


def http(url: str, token: str | None = None, cookie: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def login(url: str, password: str) -> tuple[int, str, str]:
    """What the browser does with the view's form: POST password=… to JupyterLab's /login.
    Returns the status, where it redirects and the login cookie."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode({"password": password}).encode(), method="POST")
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=10) as response:
            return response.status, "", ""
    except urllib.error.HTTPError as exc:
        cookies = "; ".join(c.split(";", 1)[0] for c in exc.headers.get_all("Set-Cookie") or [])
        return exc.code, exc.headers.get("Location", ""), cookies


@pytest.fixture
def form(alice, container):  # type: ignore[no-untyped-def]
    values = yaml.safe_load(render("form.yml.erb", {}))
    offered = [v for _, v in values["attributes"]["compute_type"]["options"]]
    image = values["attributes"]["image"]
    # Only images that serve JupyterLab, the site's Jupyter image selected.
    assert "cpu-small" in offered and [v for _, v in image["options"]] == ["jupyter"] and image["value"] == "jupyter"
    yield {"compute_type": "cpu-small", "image": image["value"], "container": container, "bindings": "",
           "bc_num_hours": "1"}
    for record in json.loads(alice.gear("history", container, "--json").stdout or "[]"):
        if record["status"] in ("queued", "syncing", "running", "saving"):
            alice.gear("stop", "--now", record["id"])


def test_a_portal_session_is_a_gear_workspace(alice, container, form):
    root = stage(alice, form)
    result = submit(alice, root, "-M", cluster_name(alice))
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.isdigit(), result.stdout
    execution = f"{container}/1"
    assert (root / "gear-execution").read_text().strip() == execution

    record = alice.gear_json("show", execution)
    assert record["mode"] == "jupyter" and record["slurm_job_id"] == job_id
    assert record["compute_type"] == "cpu-small" and record["image"] == "jupyter"

    # OnDemand's output.log (sbatch -o) is the job's log.
    assert os.readlink(root / "output.log").endswith(f"/containers/{container}/1/output.log")
    # OnDemand's view appears once the job wrote connection.yml (host, port, password),
    # which it does only once JupyterLab's port answers.
    deadline = time.monotonic() + 240
    connection = root / "connection.yml"
    while not connection.exists():
        assert time.monotonic() < deadline, alice.gear("logs", execution).stdout
        time.sleep(0.1)
    conn = yaml.safe_load(connection.read_text())
    host, port, password = str(conn["host"]), int(conn["port"]), str(conn["password"])
    address = address_of(host)
    base = f"http://{address}:{port}/node/{host}/{port}/"
    assert http(base + "api/status", password) == 200, "connection.yml before JupyterLab answered"
    assert oct(connection.stat().st_mode & 0o777) == "0o600"
    # The node's full name, where the job runs (on a cluster of one, this login node; elsewhere the
    # compute node Slurm chose, whose name in the cluster's hosts file is its full name).
    ran_on = re.search(r"\sBatchHost=(\S+)", alice.run("scontrol", "-o", "show", "job", job_id, check=True).stdout)
    assert host == (ran_on.group(1) if compute_nodes() else alice.run("hostname", "-f", check=True).stdout.strip())
    log = (root / "output.log").read_text()
    assert "connection.yml written" in log
    # OnDemand's script (stdin) is not run: the session's log says so, and it is kept.
    assert "gear-ood: note: OnDemand's job script (kept as ondemand-script.sh" in log
    assert (root / "ondemand-script.sh").read_text() == "#!/bin/bash\necho ondemand script\n"
    # The Connect button posts the password to JupyterLab's login under OnDemand's /node/
    # proxy path (here: straight to the node); no URL carries it.
    view = render("view.html.erb", {"host": host, "port": str(port), "password": password})
    action = view.split('action="', 1)[1].split('"', 1)[0]
    assert action == f"/node/{host}/{port}/login?next=%2Fnode%2F{host}%2F{port}%2Flab" and password not in action
    status, location, cookie = login(f"http://{address}:{port}{action}", password)
    assert status == 302 and location == f"/node/{host}/{port}/lab" and cookie
    assert http(f"http://{address}:{port}{location}", cookie=cookie) == 200
    assert login(f"http://{address}:{port}{action}", "wrong")[0] == 401
    # Without Jupyter's XSRF check (the login form cannot carry it), another site's page still
    # cannot use the login cookie: the API refuses its Origin.
    forged = urllib.request.Request(base + "api/contents/forged.txt", method="PUT", data=json.dumps(
        {"type": "file", "format": "text", "content": "x"}).encode(),
        headers={"Cookie": cookie, "Origin": "https://elsewhere.example.org"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 404
    assert http(base + "api/status") == 403 and http(base + "api/status", "wrong") == 403
    assert http(base + "api/contents") == 403

    history = json.loads(alice.gear("history", container, "--json", check=True).stdout)
    assert [(r["id"], r["mode"], r["status"]) for r in history] == [(execution, "jupyter", "running")]
    assert password not in alice.gear("show", execution, "--json", check=True).stdout
    assert password not in alice.run("ps", "-eo", "args", check=True).stdout

    # A real browser (Debian's chromium, headless) shows JupyterLab through the portal's path; the
    # screenshot is kept and named in the suite's summary (GEAR_OOD_SCREENSHOT chooses where).
    shot = Path(os.environ.get("GEAR_OOD_SCREENSHOT") or Path(tempfile.gettempdir()) / "gear-ood-jupyterlab.png")
    dom = _screenshot(f"{base}lab?token={password}", shot)  # the token: test only (the portal posts it)
    assert "jp-LabShell" in dom, dom[-2000:]
    ARTIFACTS.append(f"the OnDemand-style session in a real browser: {shot}")

    # A file written in the session is in the saved working directory, which `gear continue` starts from.
    put = urllib.request.Request(base + "api/contents/portal.txt", method="PUT", data=json.dumps(
        {"type": "file", "format": "text", "content": "from the portal"}).encode())
    put.add_header("Authorization", f"token {password}")
    with urllib.request.urlopen(put, timeout=10) as response:
        assert response.status in (200, 201)
    alice.gear("stop", execution, check=True)
    record = alice.gear_json("show", execution)
    assert record["status"] == "terminated" and record["mode"] == "jupyter"
    assert (Path(record["workdir"]) / "portal.txt").read_text() == "from the portal"

    result = alice.gear("continue", execution, timeout=400)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{container}/2"
    child = alice.gear_json("show", f"{container}/2")
    assert child["mode"] == "jupyter" and child["parent"] == execution
    alice.gear("stop", f"{container}/2", check=True)


def test_a_portal_session_deleted_as_ondemand_deletes_it(alice, container, form):
    """OnDemand's Delete is `scancel ID` (the id parsed from --parsable as its adapter does):
    the workspace ends terminated and saves its working directory like any stopped execution."""
    root = stage(alice, form)
    result = submit(alice, root)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().split(";")[0]     # ood_core: the id before any ";cluster"
    deadline = time.monotonic() + 240
    while not (root / "connection.yml").exists():
        assert time.monotonic() < deadline, alice.gear("logs", f"{container}/1").stdout
        time.sleep(0.2)
    alice.run("scancel", job_id, check=True)
    record = alice.wait_for(f"{container}/1", {"terminated", "failed", "lost"}, timeout=120)
    assert record["status"] == "terminated", record
    assert record["note"].startswith("terminated by scancel or Slurm"), record
    assert Path(record["workdir"]).is_dir()


@pytest.mark.parametrize("values,words", [
    ({"compute_type": "gpu-9000"}, "compute type 'gpu-9000' is not offered by this site's OnDemand form"),
    ({"image": "python"}, "image 'python' is not offered by this site's OnDemand form: it does not serve JupyterLab"),
    ({"-M": "elsewhere"}, "sbatch --clusters elsewhere: gear submits to its own Slurm cluster"),
])
def test_what_the_form_does_not_offer_is_refused(alice, container, form, values, words):
    extra = [arg for item in values.items() if item[0] == "-M" for arg in item]
    root = stage(alice, {**form, **{k: v for k, v in values.items() if k != "-M"}})
    result = submit(alice, root, *extra)
    assert result.returncode == 2 and result.stdout == ""
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    history = alice.gear("history", container, "--json")
    assert history.returncode != 0 or json.loads(history.stdout) == [], history.stdout
    assert not (alice.storage / "containers" / container).exists()
    assert not (root / "gear-execution").exists()


def _screenshot(url: str, out: Path) -> str:
    """A PNG of `url` as headless Chromium renders it; returns the rendered DOM."""
    chromium = shutil.which("chromium")
    assert chromium, "the portal test needs Debian's chromium (scripts/setup-host installs it)"
    profile = Path(tempfile.mkdtemp(prefix="gear-chromium-"))
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
              "--window-size=1100,700", "--virtual-time-budget=15000"]
    try:
        out.unlink(missing_ok=True)
        subprocess.run([*common, f"--screenshot={out}", url], capture_output=True, timeout=120)
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert out.exists() and out.stat().st_size > 1000
    return dom
