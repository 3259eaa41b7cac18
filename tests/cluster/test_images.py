"""The images the local cluster builds: `python` and `pip` answer in a job, and
`gear images NAME` lists what the image really holds (as user imguser1)."""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from pathlib import Path

import pytest

from conftest import User

# Everything a new user's first script might do: run as `python`, call pip and
# pip3, and install a package of their own with `pip install --user` (a local
# wheel: the test needs no network).
TRAIN = r'''
import json, pathlib, subprocess, sys

def out(*argv):
    proc = subprocess.run(argv, capture_output=True, text=True)
    return {"code": proc.returncode, "out": (proc.stdout + proc.stderr).strip()}

report = {"sys_version": sys.version.split()[0],
          "python3": out("python3", "--version"), "pip": out("pip", "--version"), "pip3": out("pip3", "--version"),
          "install": out("pip", "install", "--user", "--no-index", sys.argv[1])}
report["import"] = out("python", "-c", "import gearhello; print(gearhello.GREETING)")
pathlib.Path("report.json").write_text(json.dumps(report))
print("trained with", report["sys_version"])
'''


@pytest.fixture(scope="module")
def imguser() -> User:
    return User("imguser1")


def _wheel(path: Path) -> None:
    """The smallest installable wheel: one module and its metadata."""
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("gearhello.py", "GREETING = 'hello from a user install'\n")
        info = "gearhello-1.0.dist-info"
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: gearhello\nVersion: 1.0\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: gear-tests\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", f"gearhello.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")


def test_python_and_pip_answer_and_gear_images_tells_the_truth(imguser: User) -> None:
    code = imguser.make_dir({"train.py": TRAIN})
    wheel = code / "gearhello-1.0-py3-none-any.whl"
    _wheel(wheel)
    os.chown(wheel, imguser.pw.pw_uid, imguser.pw.pw_gid)
    container = f"img-{uuid.uuid4().hex[:10]}"

    # The Gear way's own example, in the default image (python).
    result = imguser.gear("run", "-c", container, "-e", "python", "--code", str(code), "-f", "--",
                          "python", "train.py", wheel.name, cwd=str(code))
    assert result.returncode == 0, (result.stdout, result.stderr)
    record = imguser.gear_json("show", f"{container}/1")
    assert record["status"] == "completed" and record["image"] == "python", record
    report = json.loads((Path(record["workdir"]) / "report.json").read_text())
    for command in ("python3", "pip", "pip3"):
        assert report[command]["code"] == 0, report
    assert report["pip"]["out"].startswith("pip ") and "python 3" in report["pip"]["out"]
    assert report["install"]["code"] == 0, report["install"]      # PEP 668 does not refuse --user
    assert report["import"] == {"code": 0, "out": "hello from a user install"}, report

    # What `gear images` calls the image's contents is what the job saw.
    in_job = report["python3"]["out"].removeprefix("Python ")
    assert in_job == report["sys_version"]
    listed = imguser.gear_json("images", "python")
    assert listed["contents_unavailable"] is None, listed
    assert listed["contents"]["python"] == in_job
    assert listed["contents"]["pip"]["pip"] == report["pip"]["out"].split()[1]
    assert "python-is-python3" in listed["contents"]["debian"]
    assert listed["contents"]["os"].startswith("Debian GNU/Linux")
    human = imguser.gear("images", "python", check=True).stdout
    assert f"  python: {in_job}\n" in human and "contents (read from the image" in human


def test_the_jupyter_image_is_labelled_too(imguser: User) -> None:
    listed = imguser.gear_json("images", "jupyter")
    assert listed["contents_unavailable"] is None, listed
    contents = listed["contents"]
    assert {"jupyterlab", "ipykernel", "click", "pip"} <= set(contents["pip"])
    assert {"python3", "python3-pip", "python-is-python3", "rsync"} <= set(contents["debian"])
