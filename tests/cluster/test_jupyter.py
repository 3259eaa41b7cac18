"""Jupyter workspaces on the real local cluster, as user alice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import compute_nodes, network_of

# Its servers are reached as from the login node (on a cluster of several nodes, through its network).
pytestmark = pytest.mark.usefixtures("login_network")


def _http(url: str, token: str | None = None, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, (json.loads(text) if text else {})
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def run_cell(base: str, token: str, kernel_id: str, code: str, timeout: float = 120) -> str:
    """Execute code in a kernel through Jupyter's websocket API; returns its stream output."""
    from tornado.websocket import websocket_connect

    async def go() -> str:
        ws_url = base.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels?token={token}"
        conn = await websocket_connect(ws_url)
        msg_id = uuid.uuid4().hex
        await conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        out = []
        # Done when the shell's reply AND iopub's "idle" have come: the two channels are not
        # ordered, so the reply can arrive before the output (seen under load).
        replied = idle = False
        while not (replied and idle):
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "execute_reply":
                replied = True
            elif msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
        conn.close()
        return "".join(out)

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def stop_leftovers(alice, container):
    """A failed test must not leave a workspace holding the node's CPUs."""
    yield
    for record in json.loads(alice.gear("history", container, "--json").stdout or "[]"):
        if record["status"] in ("queued", "syncing", "running", "saving"):
            alice.gear("stop", "--now", record["id"])


def _start(alice, *args: str) -> tuple[str, str, str]:
    result = alice.gear("jupyter", *args, timeout=400)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    url = next(line for line in lines if line.startswith("URL: ")).removeprefix("URL: ")
    return url, lines[-1], result.stdout + result.stderr


def test_workspace_serves_runs_a_cell_submits_a_gpu_run_and_stops_with_a_save(alice, container):
    code = alice.make_dir({"hello.ipynb": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                                      "cells": []})})
    url, execution, output = _start(alice, "-c", container, "-r", "cpu-small", "--code", str(code))
    assert execution == f"{container}/1"
    match = re.match(r"http://([^:/]+):(\d+)/lab\?token=([\w-]+)$", url)
    assert match, url
    node, port, token = match.group(1), int(match.group(2)), match.group(3)
    assert f"ssh -N -L {port}:{node}:{port} alice@" in output
    base = f"http://{node}:{port}/"

    # The token protects it.
    assert _http(base + "api/status")[0] == 403
    assert _http(base + "api/status", "wrong-token")[0] == 403
    assert _http(base + "api/status", token)[0] == 200
    names = {item["name"] for item in _http(base + "api/contents", token)[1]["content"]}
    assert "hello.ipynb" in names  # the notebook root is /hyperai/home

    # The secret is nowhere public: not in the ledger's JSON, not on a command line.
    shown = alice.gear("show", execution, "--json", check=True).stdout
    assert token not in shown and token not in alice.gear("status", "--json", check=True).stdout
    assert token not in alice.run("ps", "-eo", "args", check=True).stdout
    exec_dir = alice.storage / "containers" / container / "1"
    assert token not in (exec_dir / "job.sh").read_text() and token not in (exec_dir / "status.json").read_text()
    assert token not in (exec_dir / "output.log").read_text()

    # A cell through the Jupyter API; from it, `gear run` submits a GPU execution.
    status, kernel = _http(base + "api/kernels", token, "POST", {"name": "python3"})
    assert status == 201, status
    out = run_cell(base, token, kernel["id"], "import os\nprint('cwd', os.getcwd())\n"
                   "open('from-cell.txt', 'w').write('written by a cell')\nprint(os.environ['GEAR_EXECUTION'])")
    assert "cwd /hyperai/home" in out and f"{container}/1" in out
    out = run_cell(base, token, kernel["id"],
                   "import subprocess\n"
                   "r = subprocess.run(['gear', 'run', '-r', 'gpu-1', '-e', 'python', '--', 'bash', '-c', "
                   "'echo gpus=$CUDA_VISIBLE_DEVICES; cat from-cell.txt'], capture_output=True, text=True)\n"
                   "print('rc', r.returncode, r.stdout, r.stderr)\n"
                   "s = subprocess.run(['gear', 'status'], capture_output=True, text=True)\n"
                   "print('status rc', s.returncode, s.stdout, s.stderr)")
    assert "rc 0" in out and f"{container}/2" in out, out
    assert "status rc 0" in out, out
    inner = alice.wait_for(f"{container}/2", {"completed", "failed", "lost"}, 120)
    assert inner["status"] == "completed" and inner["compute_type"] == "gpu-1" and inner["mode"] == "script"
    log = alice.gear("logs", f"{container}/2", check=True).stdout
    assert re.search(r"gpus=\d", log) and "written by a cell" in log

    # Stop saves the working directory.
    result = alice.gear("stop", execution, check=True)
    assert "terminated" in result.stdout
    record = alice.gear_json("show", execution)
    assert record["status"] == "terminated" and record["mode"] == "jupyter"
    assert (Path(record["workdir"]) / "from-cell.txt").read_text() == "written by a cell"
    with pytest.raises(OSError):
        socket.create_connection((node, port), timeout=3).close()


def test_idle_workspace_shuts_down_and_saves(alice, container):
    url, execution, _ = _start(alice, "-c", container, "-r", "cpu-small", "--idle-timeout", "60")
    record = alice.wait_for(execution, {"completed", "failed", "terminated", "lost"}, 240)
    assert record["status"] == "completed", record
    assert "shut" in alice.gear("logs", execution, check=True).stdout.lower()


def test_a_taken_port_is_replaced_by_a_free_one(alice, container):
    with contextlib.ExitStack() as held:
        taken = held.enter_context(socket.socket())
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for node in compute_nodes():   # taken wherever the workspace may run
            with network_of(node):
                there = held.enter_context(socket.socket())
            there.bind(("0.0.0.0", port))
            there.listen()
        url, execution, _ = _start(alice, "-c", container, "-r", "cpu-small", "--port", str(port))
        try:
            assert f":{port}/" not in url
            assert f"port {port} is taken" in alice.gear("logs", execution, check=True).stdout
        finally:
            alice.gear("stop", "--now", execution)


def test_a_workspace_that_never_listens_fails_with_its_log(alice, container):
    # The python image has no JupyterLab: the server never starts.
    started = time.monotonic()
    result = alice.gear("jupyter", "-c", container, "-r", "cpu-small", "-e", "python", timeout=300)
    assert result.returncode == 1
    assert "did not start" in result.stderr and "the log of" in result.stderr
    assert "jupyter" in result.stderr and time.monotonic() - started < 120
    record = alice.gear_json("show", f"{container}/1")
    assert record["status"] == "failed" and record["mode"] == "jupyter"


def test_continuing_a_workspace_starts_from_its_working_directory(alice, container):
    code = alice.make_dir({"notes.ipynb": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                                      "cells": []})})
    _, first, _ = _start(alice, "-c", container, "-r", "cpu-small", "--code", str(code))
    alice.gear("stop", first, check=True)
    result = alice.gear("continue", first, timeout=400)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    url = next(line for line in lines if line.startswith("URL: ")).removeprefix("URL: ")
    second = lines[-1]
    assert second == f"{container}/2"
    record = alice.gear_json("show", second)
    assert record["mode"] == "jupyter" and record["parent"] == first
    match = re.match(r"(http://[^/]+/)lab\?token=([\w-]+)$", url)
    names = {item["name"] for item in _http(match.group(1) + "api/contents", match.group(2))[1]["content"]}
    assert "notes.ipynb" in names
    alice.gear("stop", second, check=True)
    assert (Path(alice.gear_json("show", second)["workdir"]) / "notes.ipynb").exists()
