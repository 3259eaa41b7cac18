"""sbatch's command line, as sbatch reads it: which options take a value, and where the script starts.

Shared by `gear sbatch` (executions/batch.py) and `gear ood-submit`
(ood/sbatch_args.py). Taken from `sbatch --help` of Slurm 24.11: options
whose value is required may give it as the next argument; those whose value
is optional (`--nice[=N]`) only with `=`, as getopt reads them.
"""

from __future__ import annotations

SHORT_WITH_VALUE = frozenset("-a -A -b -B -c -C -d -D -e -F -G -i -J -L -m -M -n -N -o -p -q -S -t -w -x".split())
SHORT_FLAGS = frozenset("-H -k -O -Q -s -v -W -V -h".split())
LONG_WITH_VALUE = frozenset((
    "--array --account --bb --bbf --begin --comment --cpu-freq --cpus-per-task --dependency --deadline --delay-boot "
    "--chdir --error --export-file --gid --gres --gres-flags --input --job-name --licenses --clusters --cluster "
    "--container --container-id --distribution --mail-type --mail-user --mcs-label --ntasks --ntasks-per-node "
    "--nodes --output --partition --power --priority --profile --qos --core-spec --signal --switches "
    "--thread-spec --time --time-min --tres-bind --tres-per-task --uid --wckey --wrap --cluster-constraint "
    "--constraint --nodefile --mem --mincpus --reservation --tmp --nodelist --exclude --mem-per-cpu "
    "--sockets-per-node --cores-per-socket --threads-per-core --extra-node-info --ntasks-per-core "
    "--ntasks-per-socket --cpus-per-gpu --gpus --gpu-bind --gpu-freq --gpus-per-node --gpus-per-socket "
    "--gpus-per-task --mem-per-gpu --mem-bind --hint --network --open-mode --kill-on-invalid-dep "
    "--acctg-freq --batch --burst-buffer --cpus-per-gpu --extra --export --segment").split())
# --export takes its value either way in practice (`--export NONE`); the others below only with `=`.
LONG_OPTIONAL_VALUE = frozenset((
    "--nice --exclusive --get-user-env --propagate --oom-kill-step --no-kill --requeue").split())
LONG_NAMES = {"-a": "--array", "-A": "--account", "-b": "--begin", "-B": "--extra-node-info",
              "-c": "--cpus-per-task", "-C": "--constraint", "-d": "--dependency", "-D": "--chdir",
              "-e": "--error", "-F": "--nodefile", "-G": "--gpus", "-H": "--hold", "-i": "--input",
              "-J": "--job-name", "-k": "--no-kill", "-L": "--licenses", "-m": "--distribution",
              "-M": "--clusters", "-n": "--ntasks", "-N": "--nodes", "-o": "--output", "-O": "--overcommit",
              "-p": "--partition", "-q": "--qos", "-Q": "--quiet", "-s": "--oversubscribe", "-S": "--core-spec",
              "-t": "--time", "-v": "--verbose", "-V": "--version", "-W": "--wait", "-w": "--nodelist",
              "-x": "--exclude", "-h": "--help"}


def parse(argv: list[str], stop_at_script: bool = False) -> tuple[list[tuple[str, str | None]], list[str]]:
    """sbatch's options as (long name, value or None), and what follows them.

    With `stop_at_script`, the first argument that is not an option (the
    script) ends the options, as for sbatch: the rest are the script's own
    arguments (returned second, script first). Without, a lone word is
    ("", word) among the options and nothing is left over.
    """
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--" and stop_at_script:
            return options, argv[i:]
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if not eq and name in LONG_WITH_VALUE and i < len(argv):
                value, eq = argv[i], "="
                i += 1
            options.append((name, value if eq else None))
        elif arg.startswith("-") and len(arg) >= 2:
            short = arg[:2]
            if short in SHORT_WITH_VALUE:
                if len(arg) > 2:
                    value = arg[2:].removeprefix("=")
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    value = ""
                options.append((LONG_NAMES.get(short, short), value))
            else:
                options.append((LONG_NAMES.get(short, short), None))
                for extra in arg[2:]:  # -vW: several flags in one word
                    options.append((LONG_NAMES.get(f"-{extra}", f"-{extra}"), None))
        elif stop_at_script:
            return options, argv[i - 1:]
        else:
            options.append(("", arg))
    return options, []
