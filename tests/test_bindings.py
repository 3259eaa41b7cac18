import pytest

from gear_hpc.base.errors import UsageError
from gear_hpc.data.bindings import parse, parse_all


@pytest.mark.parametrize("text,expected", [
    ("mnist:input0", dict(dataset="mnist", version=None, target="/hyperai/input/input0")),
    ("mnist:/hyperai/input/input4", dict(dataset="mnist", target="/hyperai/input/input4")),
    ("mnist:/input1", dict(dataset="mnist", target="/hyperai/input/input1")),
    ("mnist@3:input1", dict(dataset="mnist", version=3)),
    ("alice/mnist@3:input1", dict(owner="alice", dataset="mnist", version=3)),
    ("mnist-train/3:input2", dict(container="mnist-train", number=3, target="/hyperai/input/input2")),
    ("mnist-train/3:/hyperai/home", dict(container="mnist-train", number=3, target="/hyperai/home")),
    ("mnist-train/3:/output", dict(container="mnist-train", number=3, target="/hyperai/home")),
])
def test_every_form_of_the_spec(text, expected):
    spec = parse(text)
    for key, value in expected.items():
        assert getattr(spec, key) == value, key


@pytest.mark.parametrize("text,words", [
    ("mnist", "expected SOURCE:TARGET"),
    ("mnist:input5", "input5 is not a slot"),
    ("mnist:input0:ro", "more than one ':'"),
    (":input0", "source"),
    ("mnist:/etc", "target '/etc'"),
    ("mnist@x:input0", "version 'x' is not a number"),
    ("mnist@0:input0", "version '0'"),
    ("mnist,x:input0", "dataset name"),
    ("Mnist:input0", "dataset name"),
    ("../x:input0", "not a user name"),
    ("..:input0", "dataset name"),
    ("c/0:input0", "start at 1"),
    ("mnist:/hyperai/home", "only an execution's working directory"),
    ("Bad User/x:input0", "not a user name"),
])
def test_bad_specs_name_the_spec_and_the_reason(text, words):
    with pytest.raises(UsageError) as info:
        parse(text)
    assert repr(text) in str(info.value) and words in str(info.value)


def test_slots_once_at_most_five_and_one_home():
    with pytest.raises(UsageError, match="already bound"):
        parse_all(["a:input0", "b:/hyperai/input/input0"])
    with pytest.raises(UsageError, match="already bound"):
        parse_all(["c/1:/hyperai/home", "c/2:/output"])
    assert len(parse_all([f"d:input{k}" for k in range(5)] + ["c/1:/hyperai/home"])) == 6
