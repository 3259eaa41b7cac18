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

# sbatch options that take a value (as the next argument unless written --name=value).
_SHORT_WITH_VALUE = frozenset("-D -o -e -J -t -M -p -A -q -w -C -N -n -c -d -i -a -x -G -L -m -S -F -b".split())
_LONG_WITH_VALUE = frozenset((
    "--chdir --output --error --job-name --time --export --clusters --cluster --partition --account --qos "
    "--reservation --nodelist --constraint --gres --gpus --gpus-per-node --gpus-per-task --mem --mem-per-cpu "
    "--mem-per-gpu --nodes --ntasks --ntasks-per-node --cpus-per-task --mail-user --mail-type --begin --priority "
    "--nice --dependency --input --array --exclude --licenses --comment --signal --open-mode --time-min --tmp "
    "--wckey --deadline --distribution --hint --network --profile --switches --uid --gid").split())
_LONG_NAMES = {"-D": "--chdir", "-o": "--output", "-e": "--error", "-J": "--job-name", "-t": "--time",
               "-M": "--clusters", "-H": "--hold", "-p": "--partition", "-A": "--account", "-q": "--qos",
               "-w": "--nodelist", "-C": "--constraint", "-N": "--nodes", "-n": "--ntasks", "-c": "--cpus-per-task",
               "-d": "--dependency", "-G": "--gpus"}

HONOURED = frozenset({"--chdir", "--parsable", "--output"})
NOTED = frozenset({"--error", "--job-name", "--time", "--export"})

SCRIPT_NOTE = ("OnDemand's job script (kept as ondemand-script.sh; it holds the cluster's batch_connect "
               "script_wrapper and set_host) is not run: gear's job runs script.sh in the image, and "
               "before.sh sets the host (hostname -f)")


def parse(argv: list[str]) -> list[tuple[str, str | None]]:
    """sbatch's options as (long name, value); a lone word is ("", word)."""
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if not eq and name in _LONG_WITH_VALUE and i < len(argv):
                value, eq = argv[i], "="
                i += 1
            options.append((name, value if eq else None))
        elif arg.startswith("-") and len(arg) >= 2:
            short = arg[:2]
            if short in _SHORT_WITH_VALUE:
                if len(arg) > 2:
                    value = arg[2:]
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    value = ""
                options.append((_LONG_NAMES.get(short, short), value))
            else:
                options.append((_LONG_NAMES.get(short, short), None))
        else:
            options.append(("", arg))
    return options


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
