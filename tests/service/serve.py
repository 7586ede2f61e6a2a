"""Run the app under uvicorn for end-to-end tests, as `bitseek serve` does.

    python -m tests.service.serve [--fake] [--seed]

Settings come from BITSEEK_* variables. ``--fake`` serves the fake model backend (no training
needed); ``--seed`` first fills an empty data dir with the fake test collections.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    data_dir: Path, *, fake: bool, seed: bool = False, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server subprocess on a free port; returns (process, base URL) once ready."""
    import os

    port = free_port()
    full_env = {
        **os.environ,
        "BITSEEK_DATA_DIR": str(data_dir),
        "BITSEEK_PORT": str(port),
        "BITSEEK_HOST": "127.0.0.1",
        "BITSEEK_DEVICE": "cpu",
        "BITSEEK_ADMIN_TOKEN": "test-token",
        "BITSEEK_LOG_LEVEL": "warning",
        **(env or {}),
    }
    args = [sys.executable, "-m", "tests.service.serve"]
    args += ["--fake"] if fake else []
    args += ["--seed"] if seed else []
    root = Path(__file__).resolve().parents[2]
    log = open(data_dir.parent / f"server-{port}.log", "wb")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(args, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code in (200, 503):
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start in 90 s; see {log.name}")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake", action="store_true")
    parser.add_argument("--seed", action="store_true")
    args = parser.parse_args()
    import uvicorn

    from service.config import Settings
    from service.main import create_app
    from tests.conftest import FakeBackend, seed_collections

    settings = Settings.model_validate({})
    if args.seed and not (settings.data_dir / "bitseek.sqlite3").exists():
        seed_collections(settings.data_dir)
    backend = FakeBackend() if args.fake else None
    app = create_app(settings, backend=backend)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
