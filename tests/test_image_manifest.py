"""gear_hpc.image_manifest and `gear images NAME`: what an image holds, read from the image's labels."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from gear_hpc import image_manifest
from gear_hpc.image_manifest import ManifestUnavailable
from helpers import gear, write_executable

# `apptainer inspect --json /var/lib/gear-devcluster/images/python.sif`, recorded on the local cluster.
RECORDED_PYTHON_SIF = r'''{
	"data": {
		"attributes": {
			"labels": {
				"org.gear-hpc.debian": "python3=3.13.5-1 python3-pip=25.1.1+dfsg-1 python-is-python3=3.13.3-1",
				"org.gear-hpc.os": "Debian GNU/Linux 13 (trixie)",
				"org.gear-hpc.pip": "packaging==25.0 pip==25.1.1 wheel==0.46.1",
				"org.gear-hpc.python": "3.13.5",
				"org.label-schema.build-arch": "amd64",
				"org.label-schema.build-date": "Wednesday_2_December_2026_10:50:12_UTC",
				"org.label-schema.schema-version": "1.0",
				"org.label-schema.usage.apptainer.version": "1.4.5",
				"org.label-schema.usage.singularity.deffile.bootstrap": "localimage",
				"org.label-schema.usage.singularity.deffile.from": "/var/lib/gear-devcluster/build/python-root"
			}
		}
	},
	"type": "container"
}'''

# An image built without gear's labels (a site's own, before docs/admin.md's labelling).
UNLABELLED = json.dumps({"data": {"attributes": {"labels": {
    "org.label-schema.build-date": "Monday_1_December_2026_08:00:00_UTC"}}}, "type": "container"})


def test_recorded_labels_parse():
    manifest = image_manifest.parse_inspect(RECORDED_PYTHON_SIF)
    assert manifest is not None
    assert manifest.os == "Debian GNU/Linux 13 (trixie)"
    assert manifest.python == "3.13.5"
    assert manifest.pip == {"packaging": "25.0", "pip": "25.1.1", "wheel": "0.46.1"}
    assert manifest.debian == {"python3": "3.13.5-1", "python3-pip": "25.1.1+dfsg-1",
                               "python-is-python3": "3.13.3-1"}
    assert manifest.built == "Wednesday 2 December 2026 10:50:12 UTC"


def test_an_image_without_gear_labels_has_no_manifest():
    assert image_manifest.parse_inspect(UNLABELLED) is None


@pytest.mark.parametrize("output", ["", "not json", "[]", '{"data": {}}', '{"data": {"attributes": {"labels": [1]}}}'])
def test_unexpected_inspect_output_is_one_clear_error(output):
    with pytest.raises(ManifestUnavailable) as info:
        image_manifest.parse_inspect(output)
    assert "apptainer inspect" in str(info.value)


def test_collect_describes_the_python_it_runs_in():
    labels = image_manifest.collect()
    assert labels[image_manifest.PYTHON] == platform.python_version()
    pip = dict(word.split("==", 1) for word in labels[image_manifest.PIP].split())
    assert pip.get("pytest") == pytest.__version__
    # And what it writes is what the reader reads.
    manifest = image_manifest.from_labels(labels)
    assert manifest is not None and manifest.python == platform.python_version() and manifest.pip == pip


def test_collect_runs_as_a_script_with_the_standard_library_only(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "gear-image-manifest.py"   # copied alone into an image at build time
    script.write_text(Path(image_manifest.__file__).read_text())
    out = subprocess.run([sys.executable, "-I", "-B", str(script), "--format", "apptainer"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines[image_manifest.PYTHON] == platform.python_version()


def _fake_apptainer(gear_env, output: str, exit_code: int = 0, stderr: str = "") -> Path:
    """A site whose `apptainer` prints `output`; every call is logged."""
    bin_dir = gear_env["tmp"] / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "out.json").write_text(output)
    log = bin_dir / "calls.log"
    fake = write_executable(bin_dir / "apptainer", f"""#!/bin/bash
echo "$*" >> {log}
echo -n "{stderr}" >&2
cat {bin_dir / "out.json"}
exit {exit_code}
""")
    _set_apptainer(gear_env, str(fake))
    return log


def _set_apptainer(gear_env, command: str) -> None:
    import re

    site_yaml = gear_env["site"] / "site.yaml"
    text, n = re.subn(r"(?m)^apptainer: .*$", f"apptainer: {command}", site_yaml.read_text())
    assert n == 1
    site_yaml.write_text(text)


def test_gear_images_name_shows_what_the_image_says(gear_env):
    log = _fake_apptainer(gear_env, RECORDED_PYTHON_SIF)
    result = gear("images", "python")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "contents (read from the image, built Wednesday 2 December 2026 10:50:12 UTC):" in out
    assert "  os: Debian GNU/Linux 13 (trixie)\n" in out and "  python: 3.13.5\n" in out
    assert "    python-is-python3=3.13.3-1\n" in out and "    pip==25.1.1\n" in out
    # The hand-written list is there, but as the site's notes, after the image's own.
    assert out.index("site's notes (images.yaml") > out.index("contents (read from the image")
    assert log.read_text().split("\n")[0] == f"inspect --json {gear_env['tmp'] / 'python.sif'}"

    data = json.loads(gear("images", "python", "--json").stdout)
    assert data["contents"]["python"] == "3.13.5"
    assert data["contents"]["pip"]["pip"] == "25.1.1"
    assert data["contents"]["debian"]["python-is-python3"] == "3.13.3-1"
    assert data["contents_unavailable"] is None and data["dependencies"]


def test_gear_images_list_never_calls_apptainer(gear_env):
    log = _fake_apptainer(gear_env, RECORDED_PYTHON_SIF)
    assert gear("images").returncode == 0 and gear("images", "--json").returncode == 0
    assert not log.exists()


def test_without_apptainer_one_line_then_the_sites_text(gear_env):
    _set_apptainer(gear_env, str(gear_env["tmp"] / "no-such-dir" / "apptainer"))
    result = gear("images", "python")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    reason = [line for line in lines if line.startswith("contents:")]
    missing = gear_env["tmp"] / "no-such-dir" / "apptainer"
    assert reason == [f"contents: not read from the image: {missing} is not available on this machine"]
    assert any(line.startswith("description (the site's images.yaml): ") for line in lines)
    assert "site's notes (images.yaml, written by hand; may differ from the image):" in lines
    data = json.loads(gear("images", "python", "--json").stdout)
    assert data["contents"] is None and "is not available" in data["contents_unavailable"]


def test_a_failing_inspect_and_an_unlabelled_image_say_so(gear_env):
    _fake_apptainer(gear_env, "", exit_code=255, stderr="FATAL:   could not open image x: no such file")
    result = gear("images", "python")
    assert result.returncode == 0
    assert "contents: not read from the image: apptainer inspect failed: FATAL:   could not open image x: " \
           "no such file" in result.stdout
    _fake_apptainer(gear_env, UNLABELLED)
    assert "contents: not read from the image: the image carries no gear-hpc labels" in gear("images", "python").stdout
