"""Python's `site` set up only when a command imports something outside the standard library and gear.

Started with `python3 -S` (the launcher the local cluster installs, see
docs/admin.md), the interpreter skips `site`: no site-packages on sys.path,
no .pth files, no sitecustomize. That is 4 of the 11.5 ms a bare `python3`
takes to start inside the cluster, and the fast paths (`gear status`,
`gear ls`, `gear sbatch`) need nothing from site-packages. Everything else
does (click, Jinja2, PyYAML…): the first import that neither the standard
library nor gear's own directory can satisfy runs `site.main()`, exactly
what the interpreter would have run at start, and is then looked up again.
So a command behaves the same with or without `-S`; it only starts sooner.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


_enabled = False


class SiteOnDemand:
    """A last-resort import finder: the first top-level module nobody found runs `site.main()`."""

    @classmethod
    def find_spec(cls, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if path is not None:
            return None   # a submodule of a package already found: site cannot change that
        enable_site()
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(name)


def install() -> None:
    """Behind every other finder, when the interpreter started without site (`-S`); else nothing."""
    if sys.flags.no_site and SiteOnDemand not in sys.meta_path:
        sys.meta_path.append(SiteOnDemand)   # a class with find_spec is a finder


def enable_site() -> None:
    """Run what `-S` skipped, once: site-packages, .pth files, sitecustomize."""
    if SiteOnDemand in sys.meta_path:
        sys.meta_path.remove(SiteOnDemand)
    global _enabled
    if sys.flags.no_site and not _enabled:
        _enabled = True
        import site

        site.main()
