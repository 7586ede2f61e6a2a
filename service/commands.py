"""`bitseek serve` and `bitseek demo`, registered into the CLI by ``service.cli``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the HTTP API (settings from BITSEEK_* environment variables)",
        description="Serve the HTTP API with uvicorn. Options override BITSEEK_* variables.",
    )
    serve.add_argument("--host", help="interface to bind (BITSEEK_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (BITSEEK_PORT, default 8000)")
    serve.add_argument("--data-dir", help="data directory (BITSEEK_DATA_DIR, default ./data)")
    serve.add_argument("--device", help="auto, cpu, cuda or cuda:N (BITSEEK_DEVICE)")
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes over the one data directory (BITSEEK_WORKERS, default 1)",
    )
    serve.set_defaults(handler=run_serve)

    load = subparsers.add_parser(
        "import",
        help="import a whole archive into a collection (resumable)",
        description="Stream items into a collection in durable batches: to a running service"
        " (--url) or straight into a data directory. JSON Lines of item objects, or any dataset"
        " `bitseek train` reads. Run again with --resume after an interruption.",
    )
    load.add_argument("path", help="JSON Lines file, dataset file or folder")
    load.add_argument("--collection", required=True, help="the collection to import into")
    load.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000")
    load.add_argument("--data-dir", help="else this data directory (BITSEEK_DATA_DIR)")
    load.add_argument("--batch", type=int, default=500, help="items per transaction")
    load.add_argument("--resume", action="store_true", help="skip ids already stored")
    load.set_defaults(handler=run_import)

    demo = subparsers.add_parser(
        "demo",
        help="build the demo collections (one text, one image) in the data directory",
        description="Train small models on the embedded demo corpora and load their items.",
    )
    demo.add_argument("--data-dir", help="data directory (BITSEEK_DATA_DIR, default ./data)")
    demo.add_argument(
        "--if-missing", action="store_true", help="do nothing when the demo collections exist"
    )
    demo.set_defaults(handler=run_demo)


def _settings(args: argparse.Namespace) -> Any:
    from service.config import Settings

    overrides = {
        key: value
        for key in ("host", "port", "data_dir", "device", "workers")
        if (value := getattr(args, key, None)) is not None
    }
    return Settings(**overrides)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # uvicorn re-raises the SIGTERM it handled, so the process would die of it;
                # a graceful stop asked for by a signal is a success: exit 0
                self._captured_signals.clear()

    settings = _settings(args)
    if settings.workers > 1:
        return _serve_workers(settings)
    app = create_app(settings, freeze_after_start=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # SIGTERM/SIGINT: stop accepting, finish in-flight requests (at most this long), then
        # the lifespan's shutdown (retraining workers stopped, SQLite closed)
        timeout_graceful_shutdown=5,
        access_log=False,
    )
    Server(config).run()
    return 0


def _serve_workers(settings: Any) -> int:
    """Several processes, each building its own app from the environment (uvicorn's workers);
    they share the data directory and follow each other's writes (``service.follower``)."""
    import os

    import uvicorn

    for key in ("data_dir", "device"):
        os.environ[f"BITSEEK_{key.upper()}"] = str(getattr(settings, key))
    uvicorn.run(
        "service.main:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        access_log=False,
    )
    return 0


def run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from service.archive import item_lines

    try:
        lines, total = item_lines(Path(args.path))
        with tqdm(lines, total=total, unit="item", desc=f"import {args.collection}") as bar:
            if args.url:
                summary = _import_over_http(args, bar)
            else:
                summary = _import_offline(args, bar)
    except (ValueError, OSError) as exc:  # DatasetError, refused lines, a service that said no
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(  # noqa: T201
        f"imported {summary['imported']} item(s), skipped {summary['skipped']} already stored,"
        f" in {summary['batches']} batch(es); last seq {summary['seq']}"
    )
    return 0


def _import_over_http(args: argparse.Namespace, lines: Iterable[bytes]) -> Any:
    import httpx

    params = {"batch": args.batch, "skip_existing": str(args.resume).lower()}
    url = f"{args.url.rstrip('/')}/v1/collections/{args.collection}/items/import"
    headers = {"content-type": "application/x-ndjson"}
    body = _blocks(lines)
    with httpx.Client(timeout=httpx.Timeout(60.0, read=None)) as client:
        r = client.post(url, params=params, content=body, headers=headers)
    if r.status_code != 200:
        error = r.json().get("error", {}) if "json" in r.headers.get("content-type", "") else {}
        raise ValueError(f"HTTP {r.status_code}: {error.get('message', r.text)}")
    return r.json()


def _blocks(lines: Iterable[bytes], size: int = 1 << 18) -> Iterator[bytes]:
    """Lines joined into blocks of about ``size`` bytes: a chunk of the request body each."""
    block: list[bytes] = []
    held = 0
    for line in lines:
        block.append(line)
        held += len(line) + 1
        if held >= size:
            yield b"\n".join(block) + b"\n"
            block, held = [], 0
    if block:
        yield b"\n".join(block) + b"\n"


def _import_offline(args: argparse.Namespace, lines: Iterable[bytes]) -> dict[str, Any]:
    """Straight into the data directory, through the same registry a server uses (a server
    running on that directory follows the writes)."""
    from service.errors import BitseekError
    from service.importer import LineImport
    from service.storage import open_offline_registry

    registry = open_offline_registry(_settings(args))
    try:
        job = LineImport(registry, args.collection, args.batch, args.resume)
        for line in lines:
            job.add(line)
        return job.finish().model_dump()
    except BitseekError as exc:
        raise ValueError(exc.message) from None
    finally:
        registry.store.close()


def run_demo(args: argparse.Namespace) -> int:
    from service.demo import build_demo

    settings = _settings(args)
    built = build_demo(settings, if_missing=args.if_missing)
    for line in built:
        print(line)  # noqa: T201 - CLI output
    return 0
