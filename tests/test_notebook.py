"""Notebook → script: cell order, magics as valid Python, and refusals."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gear_hpc.base.errors import UsageError
from gear_hpc.cli import main
from gear_hpc.executions import notebook


def _write(path, cells, **metadata):
    nb = new_notebook(cells=cells)
    nb.metadata.update(metadata)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def magic_notebook(tmp_path):
    return _write(tmp_path / "nb.ipynb", [
        new_markdown_cell("# Title"),
        new_code_cell("%matplotlib inline\nx = 41\nprint('cell 1', x)"),
        new_code_cell("x += 1\n!echo shell says $x\nfiles = !echo a b\nprint('cell 2', files)"),
        new_code_cell("%%bash\necho from bash"),
        new_code_cell("%time y = x * 2\nprint('cell 4', y)"),
        new_code_cell("%cd /\nimport os\nprint('cwd', os.getcwd())"),
    ], kernelspec={"name": "python3", "language": "python", "display_name": "Python 3"})


def test_cells_keep_their_order_and_magics_become_valid_python(magic_notebook):
    text = notebook.to_script(magic_notebook)
    ast.parse(text)  # valid Python
    assert text.startswith("#!/usr/bin/env python3\n")
    order = [text.index(f"print('cell {n}'") for n in (1, 2, 4)]
    assert order == sorted(order)
    assert "get_ipython().run_line_magic('matplotlib', 'inline')" in text
    assert "get_ipython().system('echo shell says $x')" in text
    assert "get_ipython().run_cell_magic('bash', '', 'echo from bash\\n')" in text
    assert "# # Title" in text  # markdown as a comment


def test_script_runs_under_plain_python_without_ipython(magic_notebook, tmp_path):
    script = notebook.write_script(magic_notebook, tmp_path / "nb.py")
    assert os.access(script, os.X_OK)
    # -S -I: no site-packages, so no IPython: the fallback must do the work.
    result = subprocess.run([sys.executable, "-I", "-S", str(script)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "cell 1 41" in out and "shell says 42" in out and "cell 2 ['a b']" in out
    assert "from bash" in out and "cell 4 84" in out and "cwd /" in out
    assert out.index("cell 1") < out.index("shell says") < out.index("from bash") < out.index("cell 4")


def test_unknown_magic_fails_clearly_without_ipython(tmp_path):
    nb = _write(tmp_path / "m.ipynb", [new_code_cell("%load_data something")])
    script = notebook.write_script(nb, tmp_path / "m.py")
    result = subprocess.run([sys.executable, "-I", "-S", str(script)], capture_output=True, text=True)
    assert result.returncode != 0 and "%load_data needs IPython" in result.stderr


def test_plain_notebook_has_no_prelude(tmp_path):
    nb = _write(tmp_path / "p.ipynb", [new_code_cell("print(1)")])
    text = notebook.to_script(nb)
    assert "get_ipython" not in text and "print(1)" in text


@pytest.mark.parametrize("content,message", [
    ("", "is empty"),
    ("{not json", "not a valid notebook"),
    ('{"cells": []}', "not a valid notebook"),
    (json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}), "version 3"),
    (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "bogus"}]}),
     "not a valid"),
    (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}), "no code cells"),
])
def test_bad_notebooks_are_refused_and_nothing_is_written(tmp_path, capsys, content, message):
    tmp_path = tmp_path / "nb"
    tmp_path.mkdir()
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        notebook.to_script(path)
    assert main(["convert", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad.py").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ipynb"]


def test_r_notebook_is_refused(tmp_path):
    nb = _write(tmp_path / "r.ipynb", [new_code_cell("x <- 1")], kernelspec={"name": "ir", "language": "R",
                                                                             "display_name": "R"})
    with pytest.raises(UsageError, match="R notebook"):
        notebook.to_script(nb)


def test_cli_writes_default_and_named_output(magic_notebook, tmp_path, capsys):
    assert main(["convert", str(magic_notebook)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "nb.py")
    assert (tmp_path / "nb.py").exists()
    assert main(["convert", str(magic_notebook), "-o", str(tmp_path / "other.py")]) == 0
    assert (tmp_path / "other.py").read_text() == (tmp_path / "nb.py").read_text()
    assert main(["convert", str(tmp_path / "missing.ipynb")]) == 2
