"""Notebook → script (`gear convert`, `gear run -- x.ipynb`).

The conversion is Jupyter's own: nbformat reads and validates the notebook,
nbconvert's PythonExporter writes the code cells in order and turns magics
and shell escapes into `get_ipython()` calls with IPython's input
transformer (exactly what `jupyter nbconvert --to script` does). gear adds a
small prelude so the script also runs under plain `python3`: it uses IPython
when the image has it, and otherwise a fallback that runs shell escapes,
`%%bash`, `%cd`, `%pip`, `%time` … and skips display-only magics
(`%matplotlib`), failing clearly on any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..base.errors import GearError, UsageError

# Where the prelude goes: after nbconvert's "#!/usr/bin/env python" and coding lines.
PRELUDE = r'''
# --- added by gear convert: the magics above the cells became get_ipython() calls
# (IPython's transformer, as in `jupyter nbconvert --to script`). Under IPython they
# run as in the notebook; under plain python3 a small fallback runs the common ones.
def get_ipython():
    import sys
    global _gear_shell
    if "_gear_shell" in globals():
        return _gear_shell
    try:
        from IPython.core.interactiveshell import InteractiveShell
        _gear_shell = InteractiveShell.instance(user_module=sys.modules["__main__"])
    except ImportError:
        _gear_shell = _GearMagics(sys.modules["__main__"].__dict__)
    return _gear_shell


class _GearMagics:
    """Just enough of IPython for a converted notebook, in the standard library only."""

    _display_only = {"matplotlib", "config", "load_ext", "reload_ext", "autoreload", "aimport",
                     "notebook", "qtconsole", "gui", "colors", "xmode", "precision"}

    def __init__(self, namespace):
        self.ns = namespace

    def _expand(self, text):
        # IPython expands $name and {name} from the user's variables, leaving the rest to the shell.
        import re
        def value(match):
            name = match.group(1) or match.group(2)
            return str(self.ns[name]) if name in self.ns else match.group(0)
        return re.sub(r"\$(\w+)|\{(\w+)\}", value, text)

    def system(self, command):
        import subprocess, sys
        sys.stdout.flush()
        self.ns["_exit_code"] = subprocess.run(self._expand(command), shell=True).returncode

    def getoutput(self, command, split=True, depth=0):
        import subprocess
        out = subprocess.run(self._expand(command), shell=True, stdout=subprocess.PIPE, text=True).stdout
        return out.splitlines() if split else out

    def run_line_magic(self, name, line, _stack_depth=1):
        import os, subprocess, sys, time
        line = self._expand(line)
        if name in self._display_only:
            return None
        if name == "cd":
            os.chdir(os.path.expanduser(line.strip() or "~"))
        elif name == "pwd":
            return os.getcwd()
        elif name == "pip":
            subprocess.run([sys.executable, "-m", "pip", *line.split()], check=True)
        elif name == "env":
            key, sep, value = line.replace("=", " ", 1).partition(" ")
            if sep:
                os.environ[key.strip()] = value.strip()
            else:
                return os.environ.get(key.strip()) if key.strip() else dict(os.environ)
        elif name in ("sx", "system"):
            return self.getoutput(line)
        elif name in ("time", "timeit"):
            started = time.perf_counter()
            exec(compile(line, "<%" + name + ">", "exec"), self.ns)
            print(f"Wall time: {time.perf_counter() - started:.3f} s")
        else:
            raise RuntimeError(f"%{name} needs IPython: install it in the image (pip install ipython) "
                               "or remove the magic from the notebook")
        return None

    def run_cell_magic(self, name, line, cell):
        import subprocess, sys, time
        if name in ("bash", "sh", "script"):
            shell = {"bash": "bash", "sh": "sh"}.get(name) or line.split()[0]
            sys.stdout.flush()
            subprocess.run([shell], input=cell, text=True, check=True)
        elif name in ("python", "python3"):
            subprocess.run([sys.executable], input=cell, text=True, check=True)
        elif name == "writefile":
            args = line.split()
            mode = "a" if args and args[0] in ("-a", "--append") else "w"
            with open(args[-1], mode) as out:
                out.write(cell)
        elif name in ("time", "timeit", "capture"):
            started = time.perf_counter()
            exec(compile(cell, "<%%" + name + ">", "exec"), self.ns)
            if name != "capture":
                print(f"Wall time: {time.perf_counter() - started:.3f} s")
        elif name in self._display_only or name in ("html", "HTML", "markdown", "javascript", "js", "latex", "svg"):
            return None
        else:
            raise RuntimeError(f"%%{name} needs IPython: install it in the image (pip install ipython) "
                               "or remove the magic from the notebook")
        return None
# --- end of gear's prelude
'''


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
    """The Python script of a notebook's code cells, in order, runnable with python3."""
    nb = read(path)
    try:
        # Without IPython, nbconvert leaves magics as they are: not Python.
        import IPython.core.inputtransformer2  # noqa: F401
        from nbconvert import PythonExporter
    except ImportError as exc:
        raise GearError(f"gear convert needs nbconvert and IPython on this node ({exc}); tell your admin") from None

    body, _ = PythonExporter().from_notebook_node(nb)  # type: ignore[no-untyped-call]  # unannotated
    lines = body.splitlines(keepends=True)
    # nbconvert starts with "#!/usr/bin/env python" and "# coding: utf-8".
    header = [line for line in lines[:2] if line.startswith("#")]
    rest = lines[len(header):]
    text = "".join(rest)
    prelude = PRELUDE if "get_ipython()" in text else ""
    return (f"#!/usr/bin/env python3\n# coding: utf-8\n# Converted by gear convert from {Path(path).name}\n"
            + prelude + text)


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
    return ["python3", str(script), *command[1:]], {str(script): text}
