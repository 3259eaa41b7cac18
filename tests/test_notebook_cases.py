"""Real notebooks' cases (fixtures in tests/notebooks/): automagic lines, a cell that is not
Python, the options of the magics the fallback runs, and unbuffered runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from gear_hpc.base.errors import UsageError
from gear_hpc.cli import main
from gear_hpc.executions import notebook
from gear_hpc.executions.notebook_prelude import _GearMagics
from helpers import gear
from test_cli_errors import _nothing_created

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture
def notebooks(tmp_path):
    return Path(shutil.copytree(NOTEBOOKS, tmp_path / "notebooks"))


def _run_plain(script: Path) -> subprocess.CompletedProcess[str]:
    # -I -S: no site-packages, so no IPython: the prelude's fallback runs the magics.
    return subprocess.run([sys.executable, "-I", "-S", "-u", str(script)], capture_output=True, text=True,
                          cwd=script.parent, timeout=60)


def test_automagic_lines_become_magics_as_in_ipython(notebooks):
    # jupyter/notebook's "Importing Notebooks" example has a cell `ls nbpackage`.
    text = notebook.to_script(notebooks / "importing_notebooks.ipynb")
    compile(text, "importing_notebooks.py", "exec")
    assert "get_ipython().run_line_magic('ls', 'nbpackage')" in text
    assert "get_ipython().run_line_magic('pwd', '')" in text
    assert "\ncat\n" in text  # `cat` is a variable of the notebook by then: not the alias
    result = _run_plain(notebook.write_script(notebooks / "importing_notebooks.ipynb", notebooks / "imp.py"))
    assert result.returncode == 0, result.stderr
    assert "__init__.py" in result.stdout and "a variable" in result.stdout


def test_automagic_lines_run_under_ipython_when_the_notebook_imports_get_ipython(notebooks, tmp_path):
    # The example does `from IPython import get_ipython`, which is None in a script: the magics
    # must still reach a shell.
    text = notebook.to_script(notebooks / "importing_notebooks.ipynb")
    assert "_gear_get_ipython().run_line_magic('ls', 'nbpackage')" in text
    script = notebook.write_script(notebooks / "importing_notebooks.ipynb", notebooks / "imp.py")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "IPYTHONDIR": str(tmp_path / "ipython")}
    result = subprocess.run([sys.executable, "-u", str(script)], capture_output=True, text=True,
                            cwd=notebooks, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "__init__.py" in result.stdout and "a variable" in result.stdout


@pytest.mark.parametrize("source,magic", [
    ("ls nbpackage", True), ("cd ..", True), ("pwd", True), ("  ll -a", True), ("timeit -n 3 sum([1])", True),
    ("ls = 1", False), ("ls, x = 1, 2", False), ("ls\nprint(1)", False), ("print('x')", False),
    ("time.sleep(0)", False), ("%ls", False), ("!ls", False), ("x = 1  # ls", False),
])
def test_automagic_rule(source, magic):
    converted = notebook._automagic(source, {"x"}, TransformerManager())
    assert (converted != source) == magic
    if magic:
        assert converted == "%" + source.strip() + "\n"


def test_a_name_the_notebook_binds_is_not_a_magic():
    assert notebook._automagic("cat", {"cat"}, TransformerManager()) == "cat"
    assert notebook._automagic("cat", set(), TransformerManager()) == "%cat\n"


def test_a_cell_that_is_not_python_is_refused_with_its_number_and_line(notebooks, capsys):
    path = notebooks / "not_python.ipynb"
    with pytest.raises(UsageError, match=r"cell 2, line 2: 'ls -l nbpackage' is not Python"):
        notebook.to_script(path)
    assert main(["convert", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cell 2, line 2" in err
    assert not (notebooks / "not_python.py").exists()


def test_top_level_await_is_refused_at_convert_time(tmp_path):
    from nbformat.v4 import new_code_cell

    from test_notebook import _write

    nb = _write(tmp_path / "a.ipynb", [new_code_cell("import asyncio"), new_code_cell("await asyncio.sleep(0)")])
    with pytest.raises(UsageError, match="cell 2, line 1"):
        notebook.to_script(nb)


def test_gear_run_refuses_a_notebook_that_is_not_python_before_submitting(gear_env, fake_slurm):
    fake_slurm("sbatch", "exit 99")
    shutil.copy(NOTEBOOKS / "not_python.ipynb", gear_env["code"])
    result = gear("run", "--code", str(gear_env["code"]), "--", "not_python.ipynb")
    assert result.returncode == 2, result.stderr
    assert "cell 2, line 2" in result.stderr
    assert fake_slurm.calls() == []
    _nothing_created(gear_env)
    assert not (gear_env["code"] / "not_python.py").exists()


def test_magic_options_run_without_ipython(notebooks):
    script = notebook.write_script(notebooks / "magic_options.ipynb", notebooks / "opts.py")
    result = _run_plain(script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 runs, 3 loops each" in out and "1 runs, 2 loops each" in out
    # %%bash --bg does not block: the next cell runs while the background script sleeps.
    assert out.index("after the server started") < out.index("background done")
    assert "listing: captured" in out


def test_magic_options_run_under_ipython_too(notebooks, tmp_path):
    # IPython in the image: its magics, except %%bash --bg, which IPython runs on an event loop
    # that only a kernel keeps running (the background script's output would be lost).
    script = notebook.write_script(notebooks / "magic_options.ipynb", notebooks / "opts.py")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "IPYTHONDIR": str(tmp_path / "ipython")}
    result = subprocess.run([sys.executable, "-u", str(script)], capture_output=True, text=True,
                            cwd=notebooks, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "3 loops each" in out and "listing: captured" in out
    assert out.index("after the server started") < out.index("background done")
    assert "Traceback" not in result.stderr


def test_an_option_the_fallback_lacks_is_refused_at_convert_time(notebooks, capsys):
    assert main(["convert", str(notebooks / "bad_option.ipynb")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "cell 2" in err and "%timeit -o x + 1" in err and "option -o" in err
    assert not (notebooks / "bad_option.py").exists()


@pytest.mark.parametrize("name,line,cell,options,rest", [
    ("timeit", "-n 50 f(x)", False, {"n": 50}, "f(x)"),
    ("timeit", "-n50 -r 3 -q f(-1)", False, {"n": 50, "r": 3, "q": True}, "f(-1)"),
    ("timeit", "-qn 2 f()", False, {"q": True, "n": 2}, "f()"),
    ("timeit", "-n 2 -r 1 data = [1]", True, {"n": 2, "r": 1}, "data = [1]"),
    ("bash", "--bg --proc p", True, {"bg": True, "proc": "p"}, ""),
    ("script", "--no-raise-error bash", True, {"no-raise-error": True}, "bash"),
    ("writefile", "-a out.txt", True, {"a": True}, "out.txt"),
    ("cd", "-q /tmp", False, {"q": True}, "/tmp"),
    ("time", "-x", False, {}, "-x"),  # %time has no options: `-x` is Python
])
def test_options_parsed(name, line, cell, options, rest):
    assert _GearMagics.parse(name, line, cell) == (options, rest)
    assert _GearMagics.check(name, line, cell) is None


@pytest.mark.parametrize("name,line,cell", [
    ("timeit", "-o f()", False), ("timeit", "-n x f()", False), ("bash", "--bg --out v", True),
    ("bash", "--no-such", True), ("bash", "extra", True), ("cd", "-b mark", False), ("writefile", "", True),
    ("capture", "--bogus", True),
])
def test_options_refused(name, line, cell):
    assert "not supported" in (_GearMagics.check(name, line, cell) or "")


def test_unknown_magics_are_left_to_ipython():
    assert _GearMagics.check("load_data", "-x", False) is None
    assert _GearMagics.check("perl", "--bg", True) is None


def test_notebook_runs_unbuffered_so_the_log_follows_the_cells(notebooks):
    command, files = notebook.prepare_run(["interleaved.ipynb", "a"], notebooks)
    assert command == ["python3", "-u", "interleaved.py", "a"]
    (notebooks / "interleaved.py").write_text(files["interleaved.py"])
    # One stream for both, as the job's log: with -u the lines come in cell order.
    result = subprocess.run([sys.executable, "-I", "-S", *command[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=notebooks, timeout=60)
    lines = [line for line in result.stdout.splitlines() if line.startswith("cell")]
    assert lines == ["cell 1 out", "cell 2 err", "cell 3 out", "cell 4 err", "cell 5 shell", "cell 6 out"]
