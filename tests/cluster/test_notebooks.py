"""`gear run -- x.ipynb` in the local cluster: the log follows the cells, and a
notebook that cannot become a script is refused before anything is created."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import User

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
CELLS = ["cell 1 out", "cell 2 err", "cell 3 out", "cell 4 err", "cell 5 shell", "cell 6 out"]


@pytest.fixture(scope="module")
def nbuser() -> User:
    return User("nbuser1")


def _cell_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("cell ")]


def test_the_log_follows_the_cells_stdout_and_stderr_in_order(nbuser, container):
    code = nbuser.make_dir({"nb.ipynb": (NOTEBOOKS / "interleaved.ipynb").read_text()})
    result = nbuser.gear("run", "-c", container, "--code", str(code), "-f", "--", "nb.ipynb")
    assert result.returncode == 0, result.stderr
    assert _cell_lines(result.stdout) == CELLS, result.stdout
    log = nbuser.gear("logs", f"{container}/1", check=True).stdout
    assert _cell_lines(log) == CELLS, log
    assert nbuser.gear_json("show", f"{container}/1")["command"][:2] == ["python3", "-u"]


def test_an_automagic_line_runs(nbuser, container):
    code = nbuser.make_dir({"imp.ipynb": (NOTEBOOKS / "importing_notebooks.ipynb").read_text(),
                            "nbpackage/__init__.py": ""})
    result = nbuser.gear("run", "-c", container, "--code", str(code), "-f", "--", "imp.ipynb")
    assert result.returncode == 0, result.stderr
    assert "__init__.py" in result.stdout and "a variable" in result.stdout


def test_a_notebook_that_is_not_python_is_refused_before_anything_is_created(nbuser, container):
    code = nbuser.make_dir({"bad.ipynb": (NOTEBOOKS / "not_python.ipynb").read_text()})
    result = nbuser.gear("run", "-c", container, "--code", str(code), "-f", "--", "bad.ipynb")
    assert result.returncode == 2, result.stderr
    assert "cell 2, line 2: 'ls -l nbpackage' is not Python" in result.stderr
    assert "submitted" not in result.stderr
    assert not (nbuser.storage / "containers" / container).exists()
    ledger = nbuser.storage / "ledger.sqlite"
    if ledger.exists():
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT COUNT(*) FROM executions WHERE container = ?", (container,)).fetchone()
        assert rows[0] == 0
    assert not (code / "bad.py").exists()
