"""docker/entrypoint.sh, run as the container would run it but outside Docker.

First start on an empty data directory: the demo collections are built, the server answers
/readyz, writes go on while SIGTERM arrives, and the process exits 0 within 10 seconds. Second
start on the same directory: no rebuild, and every write the server acknowledged is there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
COLLECTION = "demo-text"  # built by `bitseek demo` (service/demo.py)
FIRST_START_TIMEOUT = 420  # demo training: about two minutes on two idle cores
RESTART_TIMEOUT = 60

pytestmark = [
    pytest.mark.slow,
    pytest.mark.local_backend("the image's entry point and demo build on its default backend"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        # `bitseek` from the environment running the tests, as the image's PATH provides it
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "BITSEEK_DATA_DIR": str(data_dir),
        "BITSEEK_HOST": "127.0.0.1",
        "BITSEEK_PORT": str(port),
        "BITSEEK_DEVICE": "cpu",
        "BITSEEK_ADMIN_TOKEN": "test-token",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            ["sh", str(ENTRYPOINT), "bitseek", "serve"], env=env, stdout=out, stderr=out
        )


def wait_ready(proc: subprocess.Popen[bytes], base: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"entrypoint exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"/readyz not 200 within {timeout}s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    """SIGTERM, then the exit code; fails if the process needs more than 10 seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"no exit within 10 s of SIGTERM:\n{log.read_text()[-4000:]}")


def upsert(client: httpx.Client, item_id: str) -> bool:
    """True only when the server acknowledged the write."""
    body = {"items": [{"id": item_id, "text": f"entrypoint durability check {item_id}"}]}
    try:
        response = client.post(f"/v1/collections/{COLLECTION}/items", json=body)
    except httpx.TransportError:
        return False
    return response.status_code == 200


def test_entrypoint_builds_demo_serves_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    proc = start(data_dir, port, log)
    try:
        wait_ready(proc, base, FIRST_START_TIMEOUT, log)
        listed = httpx.get(f"{base}/v1/collections", timeout=10).json()
        names = {c["name"] for c in listed["data"]}
        assert {"demo-text", "demo-images"} <= names, listed
        assert not (data_dir / ".demo-pending").exists()

        with httpx.Client(base_url=base, timeout=10) as client:
            assert upsert(client, "ack-before-stop")  # one plain acknowledged write
            acknowledged = ["ack-before-stop"]
            stop_writing = threading.Event()

            def keep_writing() -> None:  # writes in flight while SIGTERM arrives
                i = 0
                while not stop_writing.is_set():
                    if upsert(client, f"ack-{i}"):
                        acknowledged.append(f"ack-{i}")
                    i += 1

            writer = threading.Thread(target=keep_writing)
            writer.start()
            time.sleep(1.0)
            code = stop(proc, log)
            stop_writing.set()
            writer.join(timeout=15)
        assert code == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    size_before = log.stat().st_size
    proc = start(data_dir, port, log)
    try:
        wait_ready(proc, base, RESTART_TIMEOUT, log)
        assert "building the demo" not in log.read_text()[size_before:]
        with httpx.Client(base_url=base, timeout=10) as client:
            for item_id in acknowledged:
                response = client.get(f"/v1/collections/{COLLECTION}/items/{item_id}")
                assert response.status_code == 200, (item_id, response.text)
                assert response.json()["text"].endswith(item_id)
        assert stop(proc, log) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
