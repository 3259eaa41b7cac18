"""base/lazy_site.py: a gear started with `python3 -S` sets up site-packages on the first import that needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys; sys.path.insert(0, {REPO!r}); "
    return subprocess.run([sys.executable, *flags, "-c", prelude + code], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})


def test_without_site_a_third_party_import_sets_it_up() -> None:
    found = _python("from gear_hpc.base import lazy_site; lazy_site.install(); "
                    "import click; print(click.__name__, 'site' in sys.modules, sys.flags.no_site)", "-S")
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["click", "True", "1"]


def test_without_the_finder_the_same_import_fails() -> None:
    # What the finder is for: under -S click is not on sys.path at all.
    missing = _python("import click", "-S")
    assert missing.returncode != 0
    assert "No module named 'click'" in missing.stderr


def test_standard_library_and_gear_need_no_site() -> None:
    quiet = _python("from gear_hpc.base import lazy_site; lazy_site.install(); import sqlite3, json; "
                    "from gear_hpc.cli import fastpath; print('site' in sys.modules)", "-S")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "False"


def test_a_module_nobody_has_is_still_an_import_error() -> None:
    gone = _python("from gear_hpc.base import lazy_site; lazy_site.install(); import gear_no_such_module_x", "-S")
    assert gone.returncode != 0
    assert "No module named 'gear_no_such_module_x'" in gone.stderr


def test_with_site_nothing_is_installed() -> None:
    normal = _python("from gear_hpc.base import lazy_site; lazy_site.install(); "
                     "print(lazy_site.SiteOnDemand in sys.meta_path)")
    assert normal.returncode == 0, normal.stderr
    assert normal.stdout.strip() == "False"


def test_the_whole_command_under_dash_s() -> None:
    # `gear --help` goes through click: the launcher's -S must not change what it prints.
    with_s = _python("from gear_hpc.cli import main; sys.argv = ['gear', '--help']; sys.exit(main())", "-S")
    plain = _python("from gear_hpc.cli import main; sys.argv = ['gear', '--help']; sys.exit(main())")
    assert with_s.returncode == 0, with_s.stderr
    assert with_s.stdout == plain.stdout
