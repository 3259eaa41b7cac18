"""`gear run` and `gear jupyter` with a project file beside the code, on the real cluster (user projuser1):
an openbayes.yaml as OpenBayes's examples write it runs end to end; a bad file submits nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from conftest import User

MAIN = r'''
import argparse, json, os, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--input")
parser.add_argument("--filters", type=int)
parser.add_argument("--opt")
args = parser.parse_args()
report = {"input": args.input, "files": sorted(os.listdir(args.input)), "filters": args.filters, "opt": args.opt,
          "gear_params": json.loads(pathlib.Path("gear_params.json").read_text()),
          "openbayes_params": json.loads(pathlib.Path("openbayes_params.json").read_text())}
pathlib.Path("/output/report.json").write_text(json.dumps(report))
print("main ok")
'''

OPENBAYES_YAML = """\
data_binding:
- data: openbayes/{dataset}/1 # a dataset of the user's, named as on OpenBayes
  path: /input0
resource: cpu-small
env: python
command: "python3 main.py --input=/input0"
parameters:
  filters: 8
  opt: Adam
hyper_tuning:
  max_job_count: 5
  hyperparameter_metric: acc
  side_metrics: ["loss"]
  goal: MAXIMIZE
  algorithm: Grid
  parameter_specs:
  - name: filters
    type: DISCRETE
    discrete_values: [2, 4, 8]
"""


@pytest.fixture(scope="module")
def user() -> User:
    return User("projuser1")


@pytest.fixture
def dataset(user: User) -> str:
    name = f"d{uuid.uuid4().hex[:8]}"
    user.gear("data", "create", name, check=True)
    data = user.make_dir({"train.csv": "1,2\n"})
    user.gear("data", "upload", name, str(data), check=True)
    return name


def test_openbayes_yaml_runs_unchanged(user, dataset, container):
    # OpenBayes writes the dataset's id in mixed case: it names your dataset in lower case.
    code = user.make_dir({"main.py": MAIN, "openbayes.yaml": OPENBAYES_YAML.format(dataset=dataset.upper())})
    result = user.gear("run", "-c", container, "-f", cwd=str(code))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{container}/1"
    assert "openbayes.yaml: its hyper_tuning is not run by gear run (gear tune runs it)" in result.stderr
    record = user.gear_json("show", f"{container}/1")
    assert record["status"] == "completed" and record["compute_type"] == "cpu-small" and record["image"] == "python"
    assert record["command"] == ["python3", "main.py", "--input=/hyperai/input/input0", "--filters=8", "--opt=Adam"]
    assert [(b["source"], b["target"]) for b in record["bindings"]] == [(f"{dataset}@1", "/hyperai/input/input0")]
    report = json.loads((Path(record["workdir"]) / "report.json").read_text())
    assert report == {"input": "/hyperai/input/input0", "files": ["train.csv"], "filters": 8, "opt": "Adam",
                      "gear_params": {"filters": 8, "opt": "Adam"},
                      "openbayes_params": {"filters": 8, "opt": "Adam"}}

    # Options win: -r, --param and a command after -- (which runs as given).
    result = user.gear("run", "-c", container, "-r", "cpu-small", "--param", "filters=16", "-f", "--",
                       "python3", "main.py", "--input=/hyperai/input/input0", "--filters=16", cwd=str(code))
    assert result.returncode == 0, result.stderr
    second = user.gear_json("show", f"{container}/2")
    assert second["command"] == ["python3", "main.py", "--input=/hyperai/input/input0", "--filters=16"]
    assert json.loads((Path(second["workdir"]) / "report.json").read_text())["gear_params"] == \
        {"filters": 16, "opt": "Adam"}


def test_gear_yaml_by_file_option(user, dataset, container):
    code = user.make_dir({"gear.yaml": f"container: {container}\nresource: cpu-small\ndata: [{dataset}:input1]\n"
                                       "command: [bash, -c, 'ls /hyperai/input/input1 > seen.txt']\n"})
    result = user.gear("run", "--file", str(code / "gear.yaml"), "--code", str(code), "-f")
    assert result.returncode == 0, result.stderr
    record = user.gear_json("show", f"{container}/1")
    assert (Path(record["workdir"]) / "seen.txt").read_text() == "train.csv\n"


@pytest.mark.parametrize("text,words", [
    ("resource: cpu-small\nenv: python\ncommand: \"true\"\ncomand: x\n", "openbayes.yaml:4: comand: unknown key"),
    ("resource: cpu-small\nhyper_tuning:\n  goal: MAX\n  algorithm: Grid\n",
     "openbayes.yaml:3: hyper_tuning.goal: 'MAX' is not MAXIMIZE | MINIMIZE"),
    ("data_binding:\n- data: openbayes/nosuchdataset/2\n  path: /input0\ncommand: \"true\"\n",
     "openbayes.yaml:2: data_binding[0].data: 'openbayes/nosuchdataset/2' is an OpenBayes dataset"),
    ("resource: h100-8\ncommand: \"true\"\n", "unknown compute type 'h100-8'"),
])
def test_a_bad_project_file_submits_nothing(user, container, text, words):
    code = user.make_dir({"openbayes.yaml": text})
    before = user.gear_json("ls")
    for command in (["run", "-c", container], ["jupyter", "-c", container]):
        result = user.gear(*command, cwd=str(code))
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr
    assert user.gear_json("ls") == before
    assert not (user.storage / "containers" / container).exists()


def test_gear_jupyter_takes_type_and_data_from_the_file(user, dataset, container):
    code = user.make_dir({"gear.yaml": f"container: {container}\nresource: cpu-small\ndata: [{dataset}:input2]\n"
                                       "command: python3 never-run-by-jupyter.py\n"})
    # --wait 0: only what was recorded matters here, not whether JupyterLab answered yet.
    user.gear("jupyter", "--wait", "0", cwd=str(code))
    shown = user.gear_json("show", f"{container}/1")
    assert (shown["mode"], shown["compute_type"]) == ("jupyter", "cpu-small")
    assert [(b["source"], b["target"]) for b in shown["bindings"]] == [(f"{dataset}@1", "/hyperai/input/input2")]
    user.gear("stop", f"{container}/1")
