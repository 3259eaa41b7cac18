"""What gear ood-submit does with OnDemand's sbatch command line and script (docs/ood.md).

OnDemand's Slurm adapter builds `sbatch` arguments from the session's
`script:` settings (submit.yml, the cluster's configuration) and sends its job
script on stdin. gear's job replaces both: it is sized by the compute type and
runs the app's script.sh in the image. So each argument is either honoured,
accepted with a note in the session's log (script.sh prints the notes when the
job starts), or refused before anything is created (exit 2, one line that
OnDemand shows): an argument that would change where or how the job runs, which
gear would otherwise drop silently.
"""

from __future__ import annotations

from collections.abc import Callable

from ..base.errors import UsageError
from ..slurm import sbatch_options

HONOURED = frozenset({"--chdir", "--parsable", "--output"})
NOTED = frozenset({"--error", "--job-name", "--time", "--export"})

SCRIPT_NOTE = ("OnDemand's job script (kept as ondemand-script.sh; it holds the cluster's batch_connect "
               "script_wrapper and set_host) is not run: gear's job runs script.sh in the image, and "
               "before.sh sets the host (hostname -f)")


def parse(argv: list[str]) -> list[tuple[str, str | None]]:
    """sbatch's options as (long name, value); a lone word is ("", word) (slurm/sbatch_options.py)."""
    return sbatch_options.parse(argv)[0]


def check(argv: list[str], hours: int, local_cluster: Callable[[], str | None] = lambda: None) -> list[str]:
    """The notes for the session's log; UsageError for what gear cannot honour.

    `local_cluster()` is the name of the Slurm cluster gear submits to (ClusterName): OnDemand's
    `-M NAME` (the adapter's `cluster:`) is honoured when it names that cluster.
    """
    notes: list[str] = []
    refused: list[str] = []
    for name, value in parse(argv):
        if name in ("--clusters", "--cluster"):
            ours = local_cluster()
            if ours is None or (value or "").strip().lower() != ours.lower():
                raise UsageError(f"sbatch {name} {value}: gear submits to its own Slurm cluster "
                                 f"({ours or 'its name unknown'}), where OnDemand would not look for the job; "
                                 f"set the OnDemand cluster's job adapter `cluster` to it or remove it")
            continue
        if name == "--mail-type" and (value or "").upper() == "NONE":
            continue
        if name in HONOURED:
            continue
        if name == "--time":
            if value and value.strip() not in (f"{hours:02d}:00:00", f"{hours}:00:00", str(hours * 60)):
                notes.append(f"sbatch --time {value} ignored: the time limit is the form's {hours} h")
        elif name == "--export":
            if value and value.upper() not in ("NONE", "ALL"):
                notes.append("sbatch --export variables ignored: gear's job sets the workspace's environment")
        elif name == "--error":
            notes.append(f"sbatch --error {value} ignored: the job's one log is output.log")
        elif name == "--job-name":
            continue  # gear names its job; OnDemand tracks it by id
        else:
            refused.append(name or repr(value))
    if refused:
        raise UsageError(f"sbatch {', '.join(refused)} (from the site's OnDemand settings: submit.yml `native`, "
                         f"queue_name, accounting_id…) cannot be honoured: gear sizes the job from the compute "
                         f"type (compute-types.yaml partition, account, qos, constraint); remove them")
    return notes
