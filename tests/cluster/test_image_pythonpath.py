"""An image's own PYTHONPATH survives in an execution: gear's modules come first, the image's follow,
and no empty entry (the current directory, to Python) appears, whether the image sets one or not
(as user pyp_alice).

The image is built here from the cluster's python image, as an unprivileged user can: a sandbox of
it (`apptainer build --sandbox`, ~2 s), then a SIF from a definition file over that sandbox that adds
a module under /opt/pkgs and sets PYTHONPATH in %environment (~11 s). (A definition file over the SIF
itself needs root or fakeroot to unpack, which this cluster's users have not.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import User, custom_site

IMAGE_DEF = """\
Bootstrap: localimage
From: {base}

%files
    {code}/pyp_image_mod.py /opt/pkgs/pyp_image_mod.py
    {code}/stale_openbayestool.py /opt/pkgs/openbayestool.py

%environment
    export PYTHONPATH=/opt/pkgs
"""

# A package the image provides, and an old openbayestool beside it that must not be the one imported.
IMAGE_MODULE = "VALUE = 7.0\n"
STALE_OPENBAYESTOOL = "def log_metric(name, value):\n    raise RuntimeError('the image\\'s stale openbayestool')\n"

# What a program sees of its import path: reported, and metrics logged both ways gear offers.
TRAIN = """\
import json, os, sys
import openbayestool
from gear_metrics import log_metric
value = 1.0
module = None
if sys.argv[1:] == ["--image-module"]:
    import pyp_image_mod
    value, module = pyp_image_mod.VALUE, pyp_image_mod.__file__
log_metric("pyp_score", value)
openbayestool.log_metric("pyp_loss", 0.5)
json.dump({"pythonpath": os.environ.get("PYTHONPATH"), "path": sys.path, "cwd": os.getcwd(),
           "openbayestool": openbayestool.__file__, "module": module}, open("report.json", "w"))
print("pyp ran", flush=True)
"""


@pytest.fixture(scope="module")
def user() -> User:
    return User("pyp_alice")


@pytest.fixture(scope="module")
def site(user: User) -> Iterator[Path]:
    """A site whose images.yaml adds `pyp-image`: the python image with PYTHONPATH=/opt/pkgs and a module there."""
    repo_images = yaml.safe_load((Path(__file__).parents[2] / "site-config" / "images.yaml").read_text())
    build = user.make_dir({"pyp_image_mod.py": IMAGE_MODULE, "stale_openbayestool.py": STALE_OPENBAYESTOOL})
    (build / "image.def").write_text(IMAGE_DEF.format(base=build / "base", code=build))
    user.run("apptainer", "build", "--sandbox", str(build / "base"), repo_images["python"]["path"],
             check=True, timeout=120)
    user.run("apptainer", "build", str(build / "image.sif"), str(build / "image.def"), check=True, timeout=180)
    user.run("bash", "-c", 'chmod -R u+w -- "$1" && rm -rf -- "$1"', "_", str(build / "base"), check=True)
    site = custom_site(user)
    with (site / "images.yaml").open("a") as images:
        images.write(f"\npyp-image:\n  description: python with PYTHONPATH=/opt/pkgs\n  path: {build / 'image.sif'}\n")
    yield site
    (build / "image.sif").unlink()    # 45 MB: the executions that ran it are closed


def _run(user: User, site: Path, image: str, *args: str) -> tuple[str, dict, dict]:
    """Run TRAIN in `image` to its end: its id, its ledger record and its report."""
    code = user.make_dir({"train.py": TRAIN})
    container = f"pyp-{uuid.uuid4().hex[:10]}"
    result = user.gear("run", "-c", container, "-r", "cpu-small", "-e", image, "--code", str(code), "-f", "--",
                       "python3", "train.py", *args, cwd=str(code), env={"GEAR_SITE_CONFIG": str(site)})
    assert result.returncode == 0, (result.stdout, result.stderr)
    record = user.gear_json("show", f"{container}/1")
    assert record["status"] == "completed" and record["image"] == image, record
    assert "pyp ran" in user.gear("logs", f"{container}/1", check=True).stdout
    return f"{container}/1", record, json.loads((Path(record["workdir"]) / "report.json").read_text())


def _no_empty_entry(report: dict) -> None:
    """Nothing from PYTHONPATH puts the current directory on sys.path: no '' there, and the working
    directory only as sys.path[0] (the script's own directory, which Python always puts first)."""
    assert "" not in report["pythonpath"].split(":"), report
    assert "" not in report["path"], report
    assert report["path"][0] == report["cwd"] == "/hyperai/home", report
    assert report["path"].count("/hyperai/home") == 1, report


def test_the_images_pythonpath_follows_gears_own(user: User, site: Path) -> None:
    execution, record, report = _run(user, site, "pyp-image", "--image-module")
    assert report["pythonpath"] == "/opt/gear/python:/opt/pkgs", report
    assert report["module"] == "/opt/pkgs/pyp_image_mod.py", report
    # Ours first: the image's stale openbayestool is shadowed, and gear's metrics are written.
    assert report["openbayestool"] == "/opt/gear/python/openbayestool.py", report
    assert report["path"][1:3] == ["/opt/gear/python", "/opt/pkgs"], report
    _no_empty_entry(report)
    points = {p["name"]: p["value"] for p in user.gear_json("metrics", execution)}
    assert points == {"pyp_score": 7.0, "pyp_loss": 0.5}, points
    assert set(record["metrics"]) == {"pyp_score", "pyp_loss"}, record


def test_an_image_without_pythonpath_gets_gears_alone(user: User, site: Path) -> None:
    execution, _, report = _run(user, site, "python")
    assert report["pythonpath"] == "/opt/gear/python", report     # not "/opt/gear/python:"
    assert report["path"][1] == "/opt/gear/python", report
    _no_empty_entry(report)
    points = {p["name"]: p["value"] for p in user.gear_json("metrics", execution)}
    assert points == {"pyp_score": 1.0, "pyp_loss": 0.5}, points
