"""The project file (gear.yaml / openbayes.yaml): what it reads, and one line naming file, line and key
for everything it refuses (project/file.py, project/tuning.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gear_hpc.project import file as project
from gear_hpc.project.nodes import ProjectFileError

# Shaped as OpenBayes's own examples are (its hypertuning and MNIST example repositories).
OPENBAYES_HYPERTUNING = """\
data_binding:
- data: openbayes/eBIQp4yPMtU/2 # MNIST
  path: /input0
resource: vgpu
env: pytorch-1.8
command: "python main.py --input=/input0"
hyper_tuning:
  max_job_count: 5
  hyperparameter_metric: acc
  side_metrics: ["loss"]
  goal: MAXIMIZE
  algorithm: Grid
  parameter_specs:
  - name: filters
    type: DISCRETE
    discrete_values: [2, 4, 8, 16, 32, 64]
  - name: opt
    type: CATEGORICAL
    categorical_values: ["SGD", "Adam", "Adadelta"]
"""

OPENBAYES_TEMPLATE = """\
## the file `bayes gear init` writes: every section present, all empty
data_bindings: []
resource: cpu
env: pytorch-1.9
command: "python train.py"
parameters: {}
hyper_tuning:
  max_job_count: 0
  parallel_count: 1
  hyperparameter_metric: ""
  goal: ""
  algorithm: ""
  parameter_specs: []
  side_metrics: []
"""

OPENBAYES_PARAMETERS = """\
resource: cpu
env: tensorflow-1.15
parameters:
  output: /output
  modelname: model.h5
  epoch: 5
command: python train.py
"""

OPENBAYES_BAYESIAN = """\
bindings:
  - openbayes/mnist/1:/input0
  - prep/3:/output
resource: cpu
env: python
command: python train.py
hyper_tuning:
  max_job_count: 3
  parallel_count: 2
  hyperparameter_metric: precision
  goal: MINIMIZE
  algorithm: Bayesian
  parameter_specs:
  - {name: regularization, type: DOUBLE, min_value: 0.001, max_value: 10.0, scale_type: UNIT_LOG_SCALE}
  - {name: latent_factors, type: INTEGER, min_value: 5, max_value: 50, scale_type: UNIT_LINEAR_SCALE}
  - {name: level, type: DISCRETE, discrete_values: [1, 2, 3, 4]}
"""


def _parse(text: str, name: str = "openbayes.yaml") -> project.ProjectFile:
    return project.parse(Path(name), text)


def test_openbayes_hypertuning_example_as_it_is():
    p = _parse(OPENBAYES_HYPERTUNING)
    assert (p.resource, p.image, p.is_openbayes) == ("vgpu", "pytorch-1.8", True)
    assert p.command == ("python", "main.py", "--input=/input0")
    [ref] = p.data
    assert (ref.target, ref.openbayes, ref.line, ref.key) == ("input0", ("ebiqp4ypmtu", 2), 2, "data_binding[0].data")
    t = p.tuning
    assert t is not None
    assert (t.algorithm, t.goal, t.metric, t.side_metrics, t.max_job_count, t.parallel_count) == \
        ("Grid", "MAXIMIZE", "acc", ("loss",), 5, 1)
    assert [(s.name, s.type, s.values) for s in t.parameter_specs] == [
        ("filters", "DISCRETE", (2, 4, 8, 16, 32, 64)), ("opt", "CATEGORICAL", ("SGD", "Adam", "Adadelta"))]
    assert t.raw["algorithm"] == "Grid" and t.line == 7


def test_openbayes_template_with_empty_sections_means_no_tuning():
    p = _parse(OPENBAYES_TEMPLATE)
    assert p.tuning is None and p.data == () and p.parameters == {} and p.command == ("python", "train.py")


def test_parameters_follow_the_files_command_as_openbayes_passes_them():
    p = _parse(OPENBAYES_PARAMETERS)
    assert p.parameters == {"output": "/output", "modelname": "model.h5", "epoch": 5}
    assert p.command is not None
    assert project.command_with_parameters(p.command, p.parameters) == [
        "python", "train.py", "--output=/output", "--modelname=model.h5", "--epoch=5"]


def test_bayesian_specs_short_binding_form_and_scale_spellings():
    p = _parse(OPENBAYES_BAYESIAN)
    assert [(r.source, r.target, r.openbayes) for r in p.data] == [
        ("openbayes/mnist/1", "input0", ("mnist", 1)), ("prep/3", "/hyperai/home", None)]
    t = p.tuning
    assert t is not None and (t.algorithm, t.goal, t.parallel_count) == ("Bayesian", "MINIMIZE", 2)
    reg, factors, level = t.parameter_specs
    assert (reg.type, reg.min_value, reg.max_value, reg.scale_type) == ("DOUBLE", 0.001, 10.0, "LOG")
    assert (factors.type, factors.scale_type) == ("INTEGER", "LINEAR")
    assert level.values == (1, 2, 3, 4)


def test_gear_yaml_names_and_binding_form():
    p = _parse("container: mnist\nresource: gpu-1\nimage: python\ndata:\n  - mnist@2:input0\n  - prep/3:/hyperai/home\n"
               "command: [python3, train.py, --epochs, 3]\nparameters: {lr: 0.01}\n", "gear.yaml")
    assert (p.container, p.resource, p.image, p.is_openbayes) == ("mnist", "gpu-1", "python", False)
    assert [(r.source, r.target) for r in p.data] == [("mnist@2", "input0"), ("prep/3", "/hyperai/home")]
    assert p.command == ("python3", "train.py", "--epochs", "3")


@pytest.mark.parametrize("command,argv", [
    ("python a.py && python b.py", ["bash", "-c", "python a.py && python b.py --lr=0.1"]),
    ("python a.py > log.txt", ["bash", "-c", "python a.py > log.txt --lr=0.1"]),
    ("python t.py --x='a|b'", ["python", "t.py", "--x=a|b", "--lr=0.1"]),
    ("echo $HOME", ["bash", "-c", "echo $HOME --lr=0.1"]),
])
def test_a_command_with_shell_syntax_runs_in_bash(command, argv):
    p = _parse(f"command: {command!r}\nparameters: {{lr: 0.1}}\n", "gear.yaml")
    assert p.command is not None
    assert project.command_with_parameters(p.command, p.parameters) == argv


def test_an_empty_file_says_nothing():
    assert _parse("") == project.ProjectFile(Path("openbayes.yaml"))
    assert _parse("# only a comment\n").command is None


BAD = [
    ("resource: cpu\nenv: python\ncomand: python a.py\n", "x.yaml:3: comand: unknown key"),
    ("resource: cpu\nresource: gpu-1\n", "x.yaml:2: resource: given twice"),
    ("resource: [cpu\n", "x.yaml:2: not valid YAML"),
    ("- a\n- b\n", "x.yaml:1: expected a mapping"),
    ("env: python\nimage: python\n", "x.yaml:2: image: env and image name the same thing"),
    ("data: []\ndata_binding: []\n", "x.yaml:2: data_binding: data and data_binding both bind data"),
    ("data_binding:\n- data: mnist\n  path: /etc\n", "x.yaml:3: data_binding[0].path: '/etc' is not a place"),
    ("data_binding:\n- data: mnist\n", "x.yaml:2: data_binding[0].path: missing"),
    ("data_binding:\n- data: mnist\n  path: /input0\n  mode: ro\n", "x.yaml:4: data_binding[0].mode: unknown key"),
    ("data_binding:\n- data: Mnist\n  path: /input0\n", "x.yaml:2: data_binding[0].data: invalid binding"),
    ("bindings:\n  - openbayes/jobs/jfaqJeLMcPM/output:/output\n", "x.yaml:2: bindings[0]: "
     "'openbayes/jobs/jfaqJeLMcPM/output' is an OpenBayes execution's output"),
    ("bindings:\n  - mnist\n", "x.yaml:2: bindings[0]: 'mnist': expected SOURCE:PATH"),
    ("resource: 3\n", "x.yaml:1: resource: 3 is not a name"),
    ("container: Big Name\n", "x.yaml:1: container: invalid container name"),
    ("command: {a: 1}\n", "x.yaml:1: command:"),
    ("command: \"python 'a\"\n", "x.yaml:1: command: cannot split"),
    ("parameters: [1, 2]\n", "x.yaml:1: parameters: expected a mapping"),
    ("parameters:\n  lr: 0.1\n  -x: 2\n", "x.yaml:3: parameters.-x: not a parameter name"),
    ("hyper_tuning: 3\n", "x.yaml:1: hyper_tuning: expected a mapping"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAX\n", "x.yaml:3: hyper_tuning.goal: 'MAX' is not MAXIMIZE | MINIMIZE"),
    ("hyper_tuning:\n  algorithm: grid\n", "x.yaml:2: hyper_tuning.algorithm: 'grid' is not Grid | Random | Bayesian"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  metric: acc\n", "x.yaml:4: hyper_tuning.metric: unknown key"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n",
     "x.yaml:1: hyper_tuning.hyperparameter_metric: the name of the metric"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parallel_count: 0\n",
     "x.yaml:5: hyper_tuning.parallel_count: 0 is not a whole number ≥ 1"),
    ("hyper_tuning:\n  algorithm: Random\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parameter_specs:\n"
     "  - {name: lr, type: DOUBLE, min_value: 0.1, max_value: 1}\n",
     "x.yaml:1: hyper_tuning.max_job_count: Random tuning needs max_job_count"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parameter_specs:\n"
     "  - {name: lr, type: DOUBLE, min_value: 0.1, max_value: 1}\n",
     "x.yaml:6: hyper_tuning.parameter_specs[0].type: a Grid cannot take every value of DOUBLE 'lr'"),
    ("hyper_tuning:\n  algorithm: Random\n  max_job_count: 3\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n"
     "  parameter_specs:\n  - name: lr\n    type: DOUBLE\n    min_value: 0\n    max_value: 1\n    scale_type: LOG\n",
     "x.yaml:9: hyper_tuning.parameter_specs[0].min_value: a LOG scale needs min_value above 0"),
    ("hyper_tuning:\n  algorithm: Random\n  max_job_count: 3\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n"
     "  parameter_specs:\n  - name: n\n    type: INTEGER\n    min_value: 1.5\n    max_value: 4\n",
     "x.yaml:9: hyper_tuning.parameter_specs[0].min_value: 1.5 is not a whole number"),
    ("hyper_tuning:\n  algorithm: Random\n  max_job_count: 3\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n"
     "  parameter_specs:\n  - name: n\n    type: INTEGER\n    min_value: 5\n    max_value: 4\n",
     "x.yaml:10: hyper_tuning.parameter_specs[0].max_value: 4 is not above min_value 5"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parameter_specs:\n"
     "  - {name: f, type: DISCRETE, discrete_values: [1, a]}\n",
     "x.yaml:6: hyper_tuning.parameter_specs[0].discrete_values[1]: 'a' is not a number"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parameter_specs:\n"
     "  - {name: f, type: DISCRETE, discrete_values: [1, 2], scale_type: LOG}\n",
     "x.yaml:6: hyper_tuning.parameter_specs[0].scale_type: unknown key for a DISCRETE parameter"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parameter_specs:\n"
     "  - {name: f, type: DISCRETE, discrete_values: [1]}\n  - {name: f, type: CATEGORICAL, categorical_values: [a]}\n",
     "x.yaml:7: hyper_tuning.parameter_specs[1].name: parameter 'f' is given twice"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parameter_specs:\n"
     "  - {name: 'f x', type: FLOAT}\n",
     "x.yaml:6: hyper_tuning.parameter_specs[0].name: 'f x' is not a parameter name"),
    ("hyper_tuning:\n  algorithm: Grid\n  goal: MAXIMIZE\n  hyperparameter_metric: acc\n  parameter_specs:\n"
     "  - {name: f, type: FLOAT}\n",
     "x.yaml:6: hyper_tuning.parameter_specs[0].type: 'FLOAT' is not DISCRETE | CATEGORICAL | DOUBLE | INTEGER"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_a_bad_file_is_one_line_naming_file_line_and_key(text, message):
    with pytest.raises(ProjectFileError) as info:
        project.parse(Path("x.yaml"), text)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_load_refuses_what_is_not_text(tmp_path):
    path = tmp_path / "gear.yaml"
    path.write_bytes(b"resource: cpu\nenv: \xff\n")
    with pytest.raises(ProjectFileError, match=r"gear.yaml:2: not UTF-8 text"):
        project.load(path)


def test_find_prefers_gear_yaml(tmp_path):
    assert project.find(tmp_path) is None
    (tmp_path / "openbayes.yaml").write_text("resource: cpu\n")
    assert project.find(tmp_path) == tmp_path / "openbayes.yaml"
    (tmp_path / "gear.yaml").write_text("resource: cpu\n")
    assert project.find(tmp_path) == tmp_path / "gear.yaml"


class _Datasets:
    """The two questions binding_texts asks of the ledger, answered from a dict."""

    def __init__(self, versions: dict[str, list[int]]):
        self.known = versions

    def dataset_exists(self, name: str) -> bool:
        return name in self.known

    def versions(self, name: str) -> list[dict[str, int]]:
        return [{"version": v} for v in self.known.get(name, [])]


def test_openbayes_dataset_reference_maps_onto_your_dataset():
    p = _parse(OPENBAYES_HYPERTUNING)
    assert project.binding_texts(p, _Datasets({"ebiqp4ypmtu": [1, 2]})) == ["ebiqp4ypmtu@2:input0"]  # type: ignore[arg-type]
    with pytest.raises(ProjectFileError, match=r"openbayes.yaml:2: data_binding\[0\].data: 'openbayes/eBIQp4yPMtU/2' "
                                               r"is an OpenBayes dataset.*gear data create ebiqp4ypmtu"):
        project.binding_texts(p, _Datasets({}))  # type: ignore[arg-type]
    with pytest.raises(ProjectFileError, match=r"openbayes.yaml:2: .*has no version 2"):
        project.binding_texts(p, _Datasets({"ebiqp4ypmtu": [1]}))  # type: ignore[arg-type]


def test_options_win_over_the_file_slot_by_slot():
    from gear_hpc.project.apply import merge

    p = _parse("resource: cpu\nenv: python\ndata:\n  - mnist@1:input0\n  - prep@2:input1\n"
               "command: python3 train.py\nparameters: {lr: 0.1, bs: 32}\n", "gear.yaml")
    merged = merge(p, None, container=None, compute_type="gpu-1", image=None, bindings=["other:input1"],
                   params={"lr": 0.5}, command=[])
    assert (merged.compute_type, merged.image) == ("gpu-1", "python")
    assert merged.bindings == ["mnist@1:input0", "other:input1"]
    assert merged.params == {"lr": 0.5, "bs": 32}
    assert merged.command == ["python3", "train.py", "--lr=0.5", "--bs=32"]
    assert merged.generated_files == {}
    # A command after -- runs as given; the parameters stay in gear_params.json.
    given = merge(p, None, container="c", compute_type=None, image="other", bindings=[], params={},
                  command=["python3", "x.py"])
    assert (given.container, given.image, given.command) == ("c", "other", ["python3", "x.py"])


def test_openbayes_paths_and_params_file():
    from gear_hpc.project.apply import merge

    p = _parse("command: python main.py --input=/input0 --extra /input1/x.csv\nparameters: {data: /input2}\n")
    merged = merge(p, None, container=None, compute_type=None, image=None, bindings=[], params={}, command=[])
    assert merged.command == ["python", "main.py", "--input=/hyperai/input/input0", "--extra",
                              "/hyperai/input/input1/x.csv", "--data=/hyperai/input/input2"]
    assert json.loads(merged.generated_files["openbayes_params.json"]) == {"data": "/hyperai/input/input2"}


def test_no_file_changes_nothing():
    from gear_hpc.project.apply import merge, project_for

    assert project_for(Path("/nonexistent-dir")) is None
    merged = merge(None, None, container=None, compute_type=None, image=None, bindings=("a:input0",),
                   params={"x": 1}, command=("true",))
    assert (merged.bindings, merged.params, merged.command) == (["a:input0"], {"x": 1}, ["true"])
