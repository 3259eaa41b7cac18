"""The kept skeleton of a job script (slurm/skeleton.py) gives exactly what Jinja renders, for every
variant, on the first render (kept) and on later ones with other values (filled)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gear_hpc.executions.lifecycle import job_script
from gear_hpc.site import loading as site
from gear_hpc.slurm import render as render_module
from gear_hpc.slurm.render import _render_jinja

NASTY = ["python3", "train.py", "$(touch pwned)", "`id`", "a;b", "it's", '"q"', "%j", "a b", "*", "~", "-x", "--y", "z"]


def _variants(command: list[str], number: int, container: str = "mnist"):
    loaded = site.load()
    exec_dir = Path(f"/srv/gear/users/alice/containers/{container}/{number}")
    parent = SimpleNamespace(id=f"{container}/1", workdir=f"/srv/gear/users/alice/containers/{container}/1/home")
    common = dict(site=loaded, exec_dir=exec_dir, container=container, number=number, token="0123456789abcdef",
                  image=loaded.image("python"), command=command, user="alice")
    return {
        "gpu": lambda: job_script(compute_type=loaded.compute_type("gpu-1"), **common),
        "continuation": lambda: job_script(compute_type=loaded.compute_type("cpu-small"), home_layer=parent, **common),
        "copy": lambda: job_script(compute_type=loaded.compute_type("cpu-small"), home_layer=parent,
                                   layer_modes_kept=False, **common),
    }


@pytest.fixture(autouse=True)
def own_cache(gear_env, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(gear_env["tmp"] / "cache"))


@pytest.mark.parametrize("variant", ["gpu", "continuation", "copy"])
def test_skeleton_and_jinja_agree(gear_env, monkeypatch, variant):
    seen: list[str] = []
    real = render_module.render

    def both(template, **context):
        seen.append(_render_jinja(template, **context))
        return real(template, **context)

    monkeypatch.setattr(render_module, "render", both)
    first = _variants([f"arg{i}" for i in range(len(NASTY))], 3)[variant]()   # the same shape as NASTY
    assert first == seen[-1]                        # rendered by Jinja, skeleton kept
    kept = sorted((Path(gear_env["tmp"]) / "cache").rglob("skeletons/*.sh"))
    assert kept
    second = _variants(NASTY, 41, "other.c-1")[variant]()
    assert second == seen[-1]                       # filled from the skeleton: the same bytes
    assert sorted((Path(gear_env["tmp"]) / "cache").rglob("skeletons/*.sh")) == kept   # no new one
    assert "'$(touch pwned)'" in second


def test_a_skeleton_that_cannot_be_filled_is_rendered_again(gear_env):
    script = _variants(["true"], 2)["gpu"]()
    for kept in (Path(gear_env["tmp"]) / "cache").rglob("skeletons/*.sh"):
        kept.write_text("\x01Qnot a skeleton GEARPH999X\x02")
    assert _variants(["true"], 2)["gpu"]() == script   # a placeholder it has no value for: rendered again
