"""`gear types` and `gear images`: what the site offers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .group import json_option
from .output import print_json, table

if TYPE_CHECKING:
    from ..site.model import Image, Site


@click.command()
@json_option
def types(as_json: bool) -> None:
    """List the compute types of this site.

    \b
    Example:
      gear types
    """
    from ..site import loading as site

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
    """List the images of this site, or what one image holds.

    With NAME, the contents (OS, Python, pip and Debian packages) are read
    from the image itself (`apptainer inspect`: labels written when it was
    built); the site's notes from images.yaml follow, marked as such.

    \b
    Examples:
      gear images
      gear images python
      gear images python --json
    """
    from ..site import loading as site

    loaded = site.load()
    if name is not None:
        _show_image(loaded, loaded.image(name), as_json)
        return
    # The list reads only images.yaml: one apptainer call per image would make it slow.
    if as_json:
        print_json([i.as_dict() for i in loaded.images.values()])
        return
    table(["NAME", "DESCRIPTION"], [[i.name, i.description] for i in loaded.images.values()])


def _show_image(loaded: Site, image: Image, as_json: bool) -> None:
    from .. import image_manifest

    manifest = None
    unavailable = None
    try:
        manifest = image_manifest.read(loaded.apptainer, image.path)
        if manifest is None:
            unavailable = "the image carries no gear-hpc labels (docs/admin.md: what an image holds)"
    except image_manifest.ManifestUnavailable as exc:
        unavailable = str(exc)
    if as_json:
        print_json({**image.as_dict(), "contents": manifest.as_dict() if manifest else None,
                    "contents_unavailable": unavailable})
        return
    click.echo(f"name: {image.name}")
    click.echo(f"path: {image.path}")
    if image.description:
        click.echo(f"description (the site's images.yaml): {image.description}")
    if manifest is not None:
        click.echo("contents (read from the image" + (f", built {manifest.built}" if manifest.built else "") + "):")
        click.echo(f"  os: {manifest.os or 'not labelled'}")
        click.echo(f"  python: {manifest.python or 'not labelled'}")
        for title, packages, separator in (("debian packages", manifest.debian, "="),
                                           ("pip packages", manifest.pip, "==")):
            click.echo(f"  {title} ({len(packages)}):")
            for package, version in packages.items():
                click.echo(f"    {package}{separator}{version}" if version else f"    {package}")
    else:
        click.echo(f"contents: not read from the image: {unavailable}")
    if image.dependencies:
        click.echo("site's notes (images.yaml, written by hand; may differ from the image):")
        for dependency in image.dependencies:
            click.echo(f"  {dependency}")
