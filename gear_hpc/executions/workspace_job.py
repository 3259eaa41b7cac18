"""What a Jupyter workspace's job needs beyond a script's: one frozen value.

workspaces.build_request() makes it, RunRequest carries it, and
lifecycle.job_script() hands it to templates/jupyter.sh.j2, which reads its
attributes. Its own module so that lifecycle.py (which workspaces.py imports)
can name the type without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..slurm.apptainer import Mount


@dataclass(frozen=True)
class Workspace:
    token_file: str                        # the private file the job reads the token from
    preferred_ports: tuple[int, ...]       # tried first (--port), before a random one
    port_low: int                          # the site's range of ports (site.yaml jupyter.ports)
    port_high: int
    start_timeout: int                     # seconds for JupyterLab to listen
    idle_timeout: int                      # seconds without activity before it shuts down
    base_url: str
    environment: tuple[tuple[str, str], ...] = ()  # added to the container's environment
    mounts: tuple[Mount, ...] = ()                  # added to the container's mounts
