"""`gear data …` (datasets with immutable versions) and `gear du`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..base.sizes import human_count, human_rate
from .group import json_option, load_context, open_ledger
from .output import human_size, print_json, table
from .sharing import apply_share, visibility_options

if TYPE_CHECKING:
    from ..data.staging import Progress


@click.group()
def data() -> None:
    """Datasets: named collections of immutable, numbered versions.

    Bind a version into an execution with `gear run -d NAME[@V]:inputK`.

    \b
    Examples:
      gear data create mnist
      gear data upload mnist ./mnist-files
      gear data versions mnist
      gear run -d mnist:input0 -- python3 train.py
    """


@data.command()
@click.argument("name")
@json_option
def create(name: str, as_json: bool) -> None:
    """Create an empty dataset NAME."""
    from ..data import datasets

    _, storage = load_context()
    with open_ledger(storage) as ledger:
        created = datasets.create(ledger, storage, name)
    if as_json:
        print_json({"name": name, "created": created})
    else:
        click.echo(f"created dataset {name}" if created else f"dataset {name} already exists")


class _Bar:
    """One line on stderr: bar, percent, bytes, files, speed (MB/s, or KB/s below 1 MB/s) and files/s."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, progress: Progress) -> None:
        if not self.tty:
            return
        width = 24
        filled = width * progress.percent // 100
        files = f"{progress.files_done}/{progress.files_total} files" if progress.files_total else ""
        line = (f"\r[{'#' * filled}{' ' * (width - filled)}] {progress.percent:3d}%  "
                f"{human_size(progress.bytes_done)}  {files}  "
                f"{human_rate(progress.bytes_per_second)}  {human_count(progress.files_per_second)} files/s")
        sys.stderr.write(line.ljust(100))
        sys.stderr.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")


@data.command()
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@json_option
def upload(name: str, paths: tuple[Path, ...], as_json: bool) -> None:
    """Upload PATHS as a new version of dataset NAME.

    One directory: its contents become the version. Several paths or a file:
    each is placed under its own name (two with the same name are refused).
    An interrupted upload makes no version; running the same command again
    resumes it.

    \b
    Examples:
      gear data upload mnist ./mnist
      gear data upload mnist train.csv test.csv
    """
    from ..data import datasets

    _, storage = load_context()
    bar = _Bar()
    with open_ledger(storage) as ledger:
        try:
            version, progress = datasets.upload(ledger, storage, name, list(paths), on_progress=bar)
        finally:
            bar.done()
        record = next(v for v in ledger.versions(name) if v["version"] == version)
    if as_json:
        print_json(record)
        return
    seconds = max(progress.seconds, 1e-9)
    click.echo(f"{name}@{version}: {record['files']} files, {human_size(record['size_bytes'])} "
               f"(sent {human_size(progress.bytes_done)} in {progress.seconds:.1f} s, "
               f"{human_rate(progress.bytes_done / seconds)}, {human_count((progress.files_done or 0) / seconds)} files/s)")


@data.command()
@click.argument("name")
@json_option
def versions(name: str, as_json: bool) -> None:
    """List the versions of dataset NAME (or OWNER/NAME, another user's shared dataset)."""
    from ..data import datasets

    _, storage = load_context()
    owner, _, own_name = name.rpartition("/")
    if owner and owner != storage.user:
        from ..base.names import check_user
        from ..containers import shared_view

        rows = shared_view.dataset_versions(str(storage.storage_root), check_user(owner), own_name)
    else:
        name = own_name
        with open_ledger(storage) as ledger:
            datasets.require(ledger, name)
            rows = ledger.versions(name)
    if as_json:
        print_json(rows)
        return
    table(["VERSION", "FILES", "SIZE", "CREATED", "SOURCE"],
          [[f"{name}@{v['version']}", v["files"], human_size(v["size_bytes"]), v["created_at"], v["source"]]
           for v in rows])


@data.command(name="ls")
@json_option
def ls(as_json: bool) -> None:
    """List your datasets."""
    _, storage = load_context()
    with open_ledger(storage) as ledger:
        rows = ledger.dataset_summaries()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no datasets yet; make one with `gear data create NAME`")
        return
    table(["DATASET", "VERSIONS", "LATEST", "SIZE", "VISIBILITY", "GROUP", "CREATED"],
          [[r["name"], r["versions"], f"{r['name']}@{r['latest']}" if r["latest"] else "",
            human_size(r["size_bytes"]), r["visibility"], r["group"] or "", r["created_at"]] for r in rows])


@data.command(name="share")
@click.argument("name")
@visibility_options
@json_option
def share(name: str, visibility: str | None, group: str | None, as_json: bool) -> None:
    """Choose who may read dataset NAME: --public, --group GROUP or --private.

    Others bind a shared dataset read-only (`-d OWNER/NAME@V:input0`) and list
    it with `gear ls OWNER/`; they never see uploads under way.

    \b
    Examples:
      gear data share mnist --public
      gear data share mnist --group vision-lab
    """
    apply_share("dataset", name, visibility, group, as_json)


@data.command()
@click.argument("ref", metavar="NAME[@V]")
@json_option
def rm(ref: str, as_json: bool) -> None:
    """Delete a dataset version, or a whole dataset (refused while an open execution binds it).

    \b
    Examples:
      gear data rm mnist@2
      gear data rm mnist
    """
    from ..data import datasets
    from ..executions import reconcile

    parsed = datasets.parse_ref(ref)
    _, storage = load_context()
    with open_ledger(storage) as ledger:
        reconcile.refresh(ledger)
        removed = datasets.remove(ledger, storage, parsed)
    if as_json:
        print_json({"dataset": parsed.dataset, "removed_versions": removed, "dataset_removed": parsed.version is None})
    elif parsed.version is None:
        click.echo(f"deleted dataset {parsed.dataset} ({len(removed)} version(s))")
    else:
        click.echo(f"deleted {parsed.dataset}@{parsed.version}")


@data.command(name="from-output")
@click.argument("execution_id", metavar="CONTAINER/N")
@click.option("--dataset", help="Dataset to add the version to (created if needed). Default: the container's name.")
@click.option("--from", "from_path", metavar="SUBPATH", help="Only this directory of the working directory.")
@json_option
def from_output(execution_id: str, dataset: str | None, from_path: str | None, as_json: bool) -> None:
    """Make a new dataset version from an execution's saved working directory.

    Files are cloned (`cp --reflink=auto`): no bytes copied where the file system
    shares blocks (Btrfs, XFS, ZFS), a full copy elsewhere (ext4).

    \b
    Example:
      gear data from-output prep/2 --dataset mnist-clean --from processed
    """
    from ..base.names import parse_execution_id
    from ..data import datasets
    from ..executions import reconcile

    target = parse_execution_id(execution_id)
    _, storage = load_context()
    with open_ledger(storage) as ledger:
        reconcile.refresh(ledger)
        execution = reconcile.get(ledger, *target)
        name, version = datasets.from_output(ledger, storage, execution, dataset, from_path)
        record = next(v for v in ledger.versions(name) if v["version"] == version)
    if as_json:
        print_json(record)
    else:
        click.echo(f"{name}@{version}: {record['files']} files, {human_size(record['size_bytes'])} from {execution.id}")


@click.command()
@json_option
def du(as_json: bool) -> None:
    """Storage used, per container and per dataset.

    SIZE is what the disk holds, as `du -s` shows it: allocated blocks
    (a 1-byte file takes a whole block), each hard-linked file once (a
    continuation shares its parent's unchanged files). APPARENT is the
    bytes of the files. A dataset version made with `from-output` is a
    copy (`cp --reflink=auto`): where the file system shares blocks it
    takes none of its own, though both count here, as in `du`.

    \b
    Example:
      gear du
    """
    from ..containers import usage as container_usage
    from ..storage.disk import usage

    _, storage = load_context()
    with open_ledger(storage) as ledger:
        containers = [(name, usage(storage.container_dir(name))) for name in ledger.container_names()]
        datasets = [(r["name"], usage(storage.dataset_dir(r["name"]))) for r in ledger.dataset_summaries()]
        # Executions closed before gear kept a disk figure get one (`gear ls`, `gear show`).
        container_usage.measure_unmeasured(ledger)
    everything = containers + datasets
    if as_json:
        # The top-level figures stay the apparent sizes they always were; "disk" is what the disk holds.
        print_json({"containers": {n: u.apparent for n, u in containers},
                    "datasets": {n: u.apparent for n, u in datasets},
                    "total_bytes": sum(u.apparent for _, u in everything),
                    "disk": {"containers": {n: u.disk for n, u in containers},
                             "datasets": {n: u.disk for n, u in datasets},
                             "total_bytes": sum(u.disk for _, u in everything)}})
        return
    table(["KIND", "NAME", "SIZE", "APPARENT", "FILES"],
          [["container", n, human_size(u.disk), human_size(u.apparent), f"{u.files:,}"] for n, u in containers]
          + [["dataset", n, human_size(u.disk), human_size(u.apparent), f"{u.files:,}"] for n, u in datasets])
    click.echo(f"total: {human_size(sum(u.disk for _, u in everything))} on disk "
               f"({human_size(sum(u.apparent for _, u in everything))} apparent)")
