import pytest

from gear_hpc.base.errors import UsageError
from gear_hpc.base.names import check_name, check_text, parse_execution_id


@pytest.mark.parametrize("name", ["a", "mnist-train", "v1.2_x", "0", "a" * 64])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "..", ".", "../x", "/abs", "a/b", "A", "Mnist", "naïve", "a b",
                                  "-a", ".hidden", "_x", "a" * 65, "a\nb", "x;y", "$(x)"])
def test_invalid_names_are_refused_with_the_rule(name):
    with pytest.raises(UsageError) as info:
        check_name(name, "container name")
    assert "container name" in str(info.value)


def test_execution_ids():
    assert parse_execution_id("mnist/3") == ("mnist", 3)
    for bad in ["mnist", "mnist/", "mnist/0", "mnist/-1", "mnist/x", "../x/1", "/1", "mnist/1/2", "mnist/١"]:
        with pytest.raises(UsageError):
            parse_execution_id(bad)


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x1b"])
def test_control_characters_are_refused(char):
    with pytest.raises(UsageError) as info:
        check_text(f"a{char}b", "the command")
    assert "the command" in str(info.value)


def test_shell_metacharacters_are_plain_text():
    for text in ["$(touch x)", "`id`", "a;b", "'\"", "%j"]:
        assert check_text(text, "x") == text
