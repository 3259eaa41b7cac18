"""`gear convert`: a notebook's code cells as an executable Python script."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("notebook", type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, readable=False),
              help="Where to write the script. Default: the notebook's name with .py.")
def convert(notebook: Path, output: Path | None) -> None:
    """Convert NOTEBOOK (.ipynb, nbformat 4) into an executable Python script.

    The code cells are kept in order; markdown becomes comments. Magics and
    shell escapes become get_ipython() calls, as `jupyter nbconvert --to
    script` writes them; a one-line cell such as `ls data` is a magic, as
    IPython's automagic makes it. The script carries a small fallback so that
    `!ls`, `ls`, `%%bash [--bg]`, `%cd`, `%pip`, `%time` and `%timeit [-n N
    -r R]` also run under plain python3 (display-only magics such as
    %matplotlib are skipped). The script is compiled before it is written: a
    cell that is not Python, or a magic option the fallback lacks, is refused
    (exit 2) naming the cell. The script's path is printed.

    \b
    Examples:
      gear convert train.ipynb                 # writes train.py
      gear convert train.ipynb -o run_train.py
      gear run -r gpu-1 -- train.ipynb         # converts, then runs it
    """
    from ..executions import notebook as notebooks

    target = output or notebooks.default_output(notebook)
    if target.resolve() == notebook.resolve():
        raise click.UsageError("the output would overwrite the notebook; name another file with -o")
    notebooks.write_script(notebook, target)
    click.echo(str(target))
