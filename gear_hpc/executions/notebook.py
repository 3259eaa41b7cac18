"""Notebook → script (`gear convert`, `gear run -- x.ipynb`).

The conversion is Jupyter's own: nbformat reads and validates the notebook,
nbconvert's PythonExporter writes the code cells in order and turns magics
and shell escapes into `get_ipython()` calls with IPython's input
transformer (exactly what `jupyter nbconvert --to script` does). That
transformer has no automagic (IPython applies it at run time, to a cell of
one line): gear applies the same rule first (`_automagic`), so a cell
`ls nbpackage` becomes `%ls nbpackage`. Every cell, then the whole script,
is compiled before anything is written: a cell that is not Python is
refused with its number and line.

gear adds a prelude (notebook_prelude.py) so the script also runs under
plain `python3`: it uses IPython when the image has it, and otherwise a
fallback that runs shell escapes, aliases (`ls`, `cat` …), `%%bash`, `%cd`,
`%pip`, `%time`, `%timeit` … with the options it lists, and skips
display-only magics (`%matplotlib`); an option it does not handle is
refused at convert time, an unknown magic fails when it runs.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import os
import re
from pathlib import Path
from typing import Any

from ..base.errors import GearError, UsageError
from .notebook_prelude import _GearMagics

PRELUDE_FILE = Path(__file__).with_name("notebook_prelude.py")

# IPython's line magics and shell aliases, in a kernel: the names automagic turns into magics.
AUTOMAGIC = frozenset("""
    alias alias_magic autoawait autocall automagic bookmark cat cd clear code_wrap colors conda config cp debug
    dhist dirs doctest_mode ed edit env gui hist history killbgscripts ldir less lf lk ll load load_ext loadpy
    logoff logon logstart logstate logstop ls lsmagic lx macro magic mamba man matplotlib micromamba mkdir more
    mv notebook page pastebin pdb pdef pdoc pfile pinfo pinfo2 pip popd pprint precision prun psearch psource
    pushd pwd pycat pylab quickref recall rehashx reload_ext rep rerun reset reset_selective rm rmdir run save
    sc set_env sx system tb time timeit unalias unload_ext uv who who_ls whos xdel xmode""".split())
# IPython's split of a line (IPython.core.splitinput.line_split): escape, first word, the rest.
# The calls IPython's transformer writes for magics and shell escapes.
_MAGIC_CALL = re.compile(r"(?<![\w.])get_ipython\(\)\.(run_line_magic|run_cell_magic|system|getoutput)\(")
_LINE_SPLIT = re.compile(r"^(\s*)([,;/%]|!!?|\?\??)?\s*(%{0,2}[\w\.\*]*)(.*?$|$)")


def read(path: Path) -> Any:
    """Read and validate a version-4 Python notebook; a clear UsageError for anything else."""
    import nbformat

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"notebook {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read notebook {path}: {exc}") from None
    if not text.strip():
        raise UsageError(f"notebook {path} is empty")
    try:
        nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)  # type: ignore[no-untyped-call]  # unannotated
    except Exception as exc:  # nbformat raises NotJSONError, KeyError, … for bad files
        raise UsageError(f"notebook {path} is not a valid notebook (not JSON, or not a notebook): "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    version = nb.get("nbformat") if isinstance(nb, dict) else None
    if version is None:
        raise UsageError(f"notebook {path} is not a valid notebook: it names no nbformat version")
    if version != 4:
        raise UsageError(f"notebook {path} is nbformat version {version}; gear converts version 4 only "
                         "(open and save it in a current Jupyter to upgrade it)")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise UsageError(f"notebook {path} is not a valid version-4 notebook: {exc.message}") from None
    language = (nb.metadata.get("kernelspec", {}).get("language")
                or nb.metadata.get("language_info", {}).get("name") or "python")
    if str(language).lower() != "python":
        raise UsageError(f"notebook {path} is a {language} notebook; gear converts Python notebooks only")
    if not any(cell.cell_type == "code" and cell.source.strip() for cell in nb.cells):
        raise UsageError(f"notebook {path} has no code cells: nothing to run")
    return nb


def to_script(path: Path) -> str:
    """The Python script of a notebook's code cells, in order, runnable with python3.

    UsageError, naming the cell and the line, if a cell is not Python once its
    magics are calls (automagic included), or uses a magic's option the
    fallback cannot run; the whole script is compiled before it is returned.
    """
    nb = read(path)
    try:
        # Without IPython, nbconvert leaves magics as they are: not Python.
        from IPython.core.inputtransformer2 import TransformerManager
        from nbconvert import PythonExporter
    except ImportError as exc:
        raise GearError(f"gear convert needs nbconvert and IPython on this node ({exc}); tell your admin") from None

    name = Path(path).name
    manager = TransformerManager()  # type: ignore[no-untyped-call]  # unannotated
    bound = _bound_names(nb, manager)
    for number, cell in enumerate(nb.cells, 1):
        if cell.cell_type == "code":
            cell.source = _automagic(cell.source, bound, manager)
            code = _check_cell(name, number, cell.source, manager)
            if "get_ipython" in bound:
                # The notebook binds the name itself (`from IPython import get_ipython`, whose
                # get_ipython() is None in a script): its magics call the prelude's under another name.
                cell.source = _MAGIC_CALL.sub(r"_gear_get_ipython().\1(", code)
    body, _ = PythonExporter().from_notebook_node(nb)  # type: ignore[no-untyped-call]  # unannotated
    lines = body.splitlines(keepends=True)
    # nbconvert starts with "#!/usr/bin/env python" and "# coding: utf-8".
    header = [line for line in lines[:2] if line.startswith("#")]
    rest = lines[len(header):]
    text = "".join(rest)
    script = (f"#!/usr/bin/env python3\n# coding: utf-8\n# Converted by gear convert from {name}\n"
              + (prelude() if "get_ipython()" in text else "") + text)
    try:
        compile(script, name, "exec")
    except SyntaxError as exc:
        raise UsageError(f"{name}: the converted script is not valid Python (line {exc.lineno}: {exc.msg}); "
                         "nothing written") from None
    return script


def prelude() -> str:
    """The fallback for get_ipython(), as it goes into a script (notebook_prelude.py, from marker to marker)."""
    text = PRELUDE_FILE.read_text(encoding="utf-8")
    start = text.index("# --- added by gear convert")
    end = text.index("# --- end of gear's prelude")
    return "\n" + text[start:end] + "# --- end of gear's prelude\n"


def _transform(source: str, manager: Any) -> str:
    try:
        return str(manager.transform_cell(source))
    except Exception:  # the transformer gives up on some broken input: compile reports it
        return source


def _bound_names(nb: Any, manager: Any) -> set[str]:
    """The names the notebook's cells bind: in IPython they shadow magics of the same name."""
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_transform(cell.source, manager))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _automagic(source: str, bound: set[str], manager: Any) -> str:
    """IPython's automagic, as a `%`: a cell that is one line once transformed, whose first word
    is a line magic or alias (`ls nbpackage`, `pwd`, `cd ..`) and not a Python name the
    notebook binds, a builtin or a keyword, and not assigned to (`ls = 1`), runs that magic
    (InteractiveShell.transform_cell and prefilter's AutoMagicChecker)."""
    lines = _transform(source, manager).splitlines()
    if len(lines) != 1:
        return source
    match = _LINE_SPLIT.match(lines[0])
    if not match:
        return source
    _, escape, word, rest = match.groups()
    if (escape or word not in AUTOMAGIC or rest.lstrip()[:1] in ("=", ",") or word in bound
            or hasattr(builtins, word) or keyword.iskeyword(word)):
        return source
    return f"%{word}{rest}\n"


def _check_cell(name: str, number: int, source: str, manager: Any) -> str:
    """The cell's code, magics as calls; UsageError, naming cell and line, if it is not Python or uses a
    magic's option the fallback lacks."""
    code = _transform(source, manager)
    try:
        compile(code, f"{name} cell {number}", "exec")
    except SyntaxError as exc:
        lineno = exc.lineno or 1
        raw = source.splitlines()
        line = raw[lineno - 1] if 0 < lineno <= len(raw) else (exc.text or "")
        raise UsageError(f"{name}: cell {number}, line {lineno}: {line.strip()[:120]!r} is not Python "
                         f"({exc.msg}) nor a magic IPython knows; fix or remove it") from None
    for node in ast.walk(ast.parse(code)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("run_line_magic", "run_cell_magic") and len(node.args) >= 2
                and all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in node.args[:2])):
            magic, line = (str(arg.value) for arg in node.args[:2] if isinstance(arg, ast.Constant))
            why = _GearMagics.check(magic, line, node.func.attr == "run_cell_magic")
            if why:
                raise UsageError(f"{name}: cell {number}: {why[:300]}; remove the option") from None
    return code


def default_output(notebook: Path) -> Path:
    return notebook.with_suffix(".py")


def write_script(notebook: Path, output: Path) -> Path:
    """Convert `notebook` into the executable script `output`."""
    text = to_script(notebook)
    tmp = output.with_name(f".{output.name}.gear-tmp")
    tmp.write_text(text, encoding="utf-8")
    mode = 0o777 & ~_umask()
    os.chmod(tmp, mode | (0o100 if mode & 0o400 else 0))
    os.replace(tmp, output)
    return output


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def prepare_run(command: list[str], code: Path) -> tuple[list[str], dict[str, str]]:
    """`gear run -- x.ipynb ARGS…`: the command that runs the converted script, and the file to add.

    The notebook is looked up in the code that is uploaded (the command runs
    in /hyperai/home, where the code lands); the script goes beside it as
    x.py, or x.ipynb.py when the code already has an x.py.
    """
    name = command[0]
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise UsageError(f"{name}: give the notebook's path inside the uploaded code (--code), "
                         "relative to it, for example: gear run -- train.ipynb")
    code = Path(code)
    if code.is_dir():
        source = code / relative
    elif code.name == relative.name and len(relative.parts) == 1:
        source = code
    else:
        source = code.parent / "__no_such_notebook__" / relative
    if not source.is_file():
        raise UsageError(f"notebook {name} is not in the uploaded code ({code}); "
                         "run from its directory or name that directory with --code")
    text = to_script(source)
    script = relative.with_suffix(".py")
    if code.is_dir() and (code / script).exists():
        script = relative.with_name(relative.name + ".py")
    # -u: unbuffered, so the log follows the cells (stdout and stderr in the order they were written).
    return ["python3", "-u", str(script), *command[1:]], {str(script): text}
