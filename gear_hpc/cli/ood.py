"""`gear ood-submit`: the sbatch that Open OnDemand's Slurm adapter runs (docs/ood.md)."""

from __future__ import annotations

import json
import sys

import click

from .group import load_context

FORM_OPTIONS = "--form-options"


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False,
                                 "help_option_names": ["--help"]})
@click.argument("sbatch_args", nargs=-1, type=click.UNPROCESSED)
def ood_submit(sbatch_args: tuple[str, ...]) -> None:
    """Submit an Open OnDemand session of gear's Jupyter app as a workspace.

    Sites point OnDemand's Slurm adapter at this command
    (`bin_overrides: {sbatch: /usr/local/bin/gear-ood-sbatch}`, a two-line
    shim). It takes sbatch's arguments and script: a session of the gear app
    (its staged directory, `-D DIR`, holds `gear-ood.json`) becomes a `jupyter`
    execution in your ledger, exactly as with `gear jupyter`, and the command
    prints what sbatch prints (`Submitted batch job N`, or N with
    --parsable). Anything else is handed to the real sbatch unchanged.

    `gear ood-submit --form-options` prints, as JSON, the images the app's
    form offers (those that serve JupyterLab, site.yaml `jupyter.images`) and
    the default one.

    \b
    Example (what OnDemand runs; the script arrives on stdin):
      gear ood-submit -D ~/ondemand/data/sys/dashboard/batch_connect/sys/gear-jupyter/output/ID \\
          -J sys/dashboard/sys/gear-jupyter -o ID/output.log -t 01:00:00 --export NONE --parsable
    """
    from ..ood import submit as ood
    from .output import warn

    argv = list(sbatch_args)
    if argv == [FORM_OPTIONS]:  # not an sbatch option: the app's form asks what to offer
        site, _ = load_context()
        click.echo(json.dumps(ood.form_options(site)))
        return
    if not ood.is_ours(argv):
        ood.passthrough(argv)
        return
    root = ood.staged_root(argv)
    assert root is not None
    # OnDemand's own script: gear's job replaces it (kept, and noted in the session's log).
    script = "" if sys.stdin.isatty() else sys.stdin.read()
    ood.clean_environment()
    site, storage = load_context()
    execution = ood.start(site, storage, root, notice=warn, argv=argv, script=script)
    click.echo(f"gear: recorded workspace {execution.id} ({execution.compute_type}, {execution.image})", err=True)
    assert execution.slurm_job_id is not None  # start() returns a submitted execution
    click.echo(ood.sbatch_output(execution.slurm_job_id, argv))
