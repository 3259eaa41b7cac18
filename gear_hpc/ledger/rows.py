"""The ledger's schema facts and read queries, over plain rows.

`ledger.Ledger` (migrations, writes) and the fast path of `gear ls` /
`gear status` (cli/fastpath.py) both read through this module, so the two
cannot print different things. It declares Execution's fields, once:
ledger/db.py makes the class a dataclass, the fast path reads their names. It imports nothing but
the standard library's `json`, and that only when a row has JSON to decode:
`@dataclass` and sqlite-utils cost more than the whole fast path.
"""

from __future__ import annotations

from ..base.facts import OPEN_STATUSES, SCHEMA_VERSION as SCHEMA_VERSION  # the fast path reads it from here

# Annotations only: importing typing would cost the fast path (fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from dataclasses import dataclass
    from typing import Any
else:
    def dataclass(cls: type) -> type:  # ledger/db.py applies the real one
        return cls

# How long a command waits for another one's write lock. Writes hold it for
# milliseconds; a lock held longer is a stuck program, and the user is told
# so (errors.describe) rather than left waiting.
BUSY_TIMEOUT_MS = 5_000


@dataclass
class Execution:
    """One execution, a row of the ledger. ledger/db.py makes it a dataclass (this module does not
    import dataclasses: the fast path reads only the names of its fields, EXECUTION_FIELDS)."""

    container: str
    number: int
    mode: str
    status: str
    compute_type: str
    image: str
    command: list[str]
    params: dict[str, Any]
    bindings: list[dict[str, Any]]
    workdir: str
    token: str
    message: str | None = None
    exit_code: int | None = None
    parent: str | None = None
    slurm_job_id: str | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    size_bytes: int | None = None
    note: str | None = None
    created_at: str | None = None
    disk_bytes: int | None = None

    @property
    def id(self) -> str:
        return f"{self.container}/{self.number}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def to_json(self) -> dict[str, Any]:
        return execution_json(vars(self))


# The fields of an execution, in Execution's order: the order of the keys of its JSON.
EXECUTION_FIELDS = tuple(Execution.__annotations__)
JSON_COLUMNS = ("command", "params", "bindings")

# Each container's totals are columns of its row, kept up to date by triggers
# on `executions` (ledger/migrations.py, 3 and 5): 100 rows to read, not 10,000.
# size_bytes: apparent bytes of the working directories; disk_bytes: what the
# disk holds for the container (storage.execution_usage).
CONTAINER_SUMMARY_FIELDS = ("name", "created_at", "visibility", "group", "executions", "last_number", "size_bytes",
                            "disk_bytes", "last_status")
CONTAINER_SUMMARIES_SQL = """
    SELECT name, created_at, visibility, share_group, execution_count AS executions, last_number, size_bytes,
           disk_bytes, last_status
    FROM containers ORDER BY name"""


def container_summaries(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each container with its number of executions, last one, total sizes and visibility."""
    return [dict(zip(CONTAINER_SUMMARY_FIELDS, row, strict=True)) for row in conn.execute(CONTAINER_SUMMARIES_SQL)]


def executions_query(container: str | None = None, statuses: tuple[str, ...] | None = None,
                     ended_since: str | None = None) -> tuple[str, list[Any]]:
    """SQL and parameters selecting whole execution rows, in container and number order."""
    clauses, params = [], []
    if container is not None:
        clauses.append("container = ?")
        params.append(container)
    if statuses is not None:
        clause = f"status IN ({', '.join('?' * len(statuses))})"
        if ended_since is not None:
            clause = f"({clause} OR ended_at >= ?)"
            params.extend(statuses)
            params.append(ended_since)
        else:
            params.extend(statuses)
        clauses.append(clause)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    # Open or ended since: with ORDER BY container, number, SQLite walks the
    # whole primary key in order (2 ms with 10,000 executions) rather than
    # search both indexes and sort the few rows found. The unary + (same
    # values, same collation) stops the key from serving the order, and the
    # planner takes each side of the OR through its index, every row once
    # (MULTI-INDEX OR, 0.05 ms; a test checks the plan).
    order = "+container, number" if ended_since is not None else "container, number"
    return f"SELECT * FROM executions {where} ORDER BY {order}", params


def execution_values(row: sqlite3.Row | dict[str, Any], decode: bool = True) -> dict[str, Any]:
    """The fields of one execution row, its JSON columns decoded (ledger.Execution(**values)).

    decode=False leaves the JSON columns as they are stored, for a table that
    does not show them (importing json costs the fast path 5 ms).
    """
    values = {key: row[key] for key in row.keys() if key in EXECUTION_FIELDS}
    for key in JSON_COLUMNS if decode else ():
        if values[key] is None:
            values[key] = [] if key != "params" else {}
        else:
            import json

            values[key] = json.loads(values[key])
    return values


def execution_json(values: dict[str, Any]) -> dict[str, Any]:
    """What ledger.Execution.to_json() gives for these values: its id, then every field but the token."""
    data: dict[str, Any] = {"id": f"{values['container']}/{values['number']}"}
    for name in EXECUTION_FIELDS:
        if name != "token":
            data[name] = values.get(name)
    return data
