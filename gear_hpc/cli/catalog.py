"""`gear types` and `gear images`: what the site offers."""

from __future__ import annotations

import click

from .group import json_option
from .output import print_json, table


@click.command()
@json_option
def types(as_json: bool) -> None:
    """List the compute types of this site.

    \b
    Example:
      gear types
    """
    from .. import site

    loaded = site.load()
    if as_json:
        print_json([t.as_dict() for t in loaded.compute_types.values()])
        return
    table(["NAME", "PARTITION", "CPUS", "MEMORY", "GPUS", "TIME LIMIT", "DESCRIPTION"],
          [[t.name, t.partition, t.cpus, t.memory, f"{t.gpus} x {t.gpu_type}" if t.gpu_type else t.gpus,
            t.time_limit, t.description] for t in loaded.compute_types.values()])


@click.command()
@click.argument("name", required=False)
@json_option
def images(name: str | None, as_json: bool) -> None:
    """List the images of this site, or one image with its dependencies.

    \b
    Examples:
      gear images
      gear images python
    """
    from .. import site

    loaded = site.load()
    if name is not None:
        image = loaded.image(name)
        if as_json:
            print_json(image.as_dict())
            return
        click.echo(f"{image.name}: {image.description}")
        click.echo(f"path: {image.path}")
        click.echo("dependencies:")
        for dependency in image.dependencies:
            click.echo(f"  {dependency}")
        return
    if as_json:
        print_json([i.as_dict() for i in loaded.images.values()])
        return
    table(["NAME", "DESCRIPTION"], [[i.name, i.description] for i in loaded.images.values()])
