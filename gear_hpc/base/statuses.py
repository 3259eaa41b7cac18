"""The names of an execution's statuses and of a Slurm job's phases: one list for all of gear.

The ledger, the status folding (executions/reconcile.py), the mail program
and the fast path of `gear ls`/`gear status` all read them from here. Plain
strings and tuples, no imports: the fast path (cli/fastpath.py) pays nothing.
"""

# An execution is open while gear may still change it.
SUBMITTING = "submitting"  # recorded, not yet (known to be) with Slurm
QUEUED = "queued"
SYNCING = "syncing"        # the job copies the code into the working directory
RUNNING = "running"
SAVING = "saving"
OPEN_STATUSES = (SUBMITTING, QUEUED, SYNCING, RUNNING, SAVING)

COMPLETED = "completed"
FAILED = "failed"
TERMINATED = "terminated"
TIMEOUT = "timeout"
LOST = "lost"              # gear's verdict on confirmed evidence (docs/design.md), never a job's
CLOSED_STATUSES = (COMPLETED, FAILED, TERMINATED, TIMEOUT, LOST)

# What a running job's status records name (its phases), and what its final record may say.
JOB_PHASES = (SYNCING, RUNNING, SAVING)
REPORTED_BY_JOB = tuple(status for status in CLOSED_STATUSES if status != LOST)

# A Slurm job's phase, as slurm.jobs.SlurmJob.phase gives it.
JOB_PENDING = "pending"
JOB_RUNNING = "running"
JOB_ENDED = "ended"
