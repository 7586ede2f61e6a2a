"""Retraining jobs: one worker process per job, one job per collection, monitored by a thread.

States: queued -> training -> applying -> succeeded | failed | cancelled. The model and index are
only swapped by ``Registry.activate`` after the worker succeeded; anything else leaves the
serving version untouched and removes the half-made version directory.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue as queue_mod
import shutil
import threading
import time
import uuid
from typing import Any

import numpy as np

from service.errors import Conflict, NotFound
from service.registry import Precomputed, Registry
from service.worker import JobSpec, run_job

log = logging.getLogger(__name__)

FINAL = ("succeeded", "failed", "cancelled")


class JobManager:
    def __init__(self, registry: Registry, torch_threads: int = 0) -> None:
        self.registry = registry
        self.torch_threads = torch_threads
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}  # live jobs, also persisted in SQLite
        self._procs: dict[str, Any] = {}
        self._by_collection: dict[str, str] = {}
        self._ctx = mp.get_context("spawn")  # no fork: the server holds threads and locks
        self.finished = 0

    def start(self, collection: str, settings: dict[str, Any]) -> dict[str, Any]:
        state = self.registry.get(collection)
        self.registry.backend.validate(settings)
        if state.size == 0:
            raise Conflict(f"collection {collection!r} has no items to train on", "collection")
        with self._lock:
            running = self._by_collection.get(collection)
            if running is not None:
                raise Conflict(
                    f"job {running} is already retraining {collection!r}; wait for it or cancel"
                    " it (POST /v1/admin/jobs/{id}/cancel)",
                    "collection",
                )
            job_id = uuid.uuid4().hex[:16]
            version = self.registry.next_version(collection)
            job: dict[str, Any] = {
                "id": job_id,
                "collection": collection,
                "state": "queued",
                "settings": settings,
                "progress": {},
                "metrics": None,
                "error": None,
                "version": version,
                "created_at": time.time(),
            }
            self._jobs[job_id] = job
            self._by_collection[collection] = job_id
        self.registry.store.put_job(job)
        limits = self.registry.limits
        spec = JobSpec(
            job_id=job_id,
            collection=collection,
            modality=state.modality,
            spec=dict(state.spec),
            limits=dict(limits),
            settings=self._with_defaults(state.spec, settings),
            db_path=self.registry.store.path,
            model_dir=self.registry.model_dir(collection, version),
            job_dir=self.registry.data_dir / "jobs" / job_id,
            backend=self.registry.backend,
            torch_threads=self.torch_threads,
        )
        q = self._ctx.Queue()
        proc = self._ctx.Process(target=run_job, args=(spec, q), daemon=True, name=f"job-{job_id}")
        proc.start()
        self._procs[job_id] = proc
        self._update(job_id, state="training")
        threading.Thread(
            target=self._monitor, args=(spec, proc, q), daemon=True, name=f"monitor-{job_id}"
        ).start()
        return dict(job)

    def _with_defaults(self, spec: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        out = dict(settings)
        if "bits" in spec and "bits" not in out:
            out["bits"] = spec["bits"]
        if "device" not in out and self.registry.device.startswith("cuda"):
            out["device"] = "cuda"  # train where the service infers
        return out

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            live = self._jobs.get(job_id)
            if live is not None:
                return dict(live)
        stored = self.registry.store.get_job(job_id)
        if stored is None:
            raise NotFound(f"no job {job_id!r}", "job_id")
        return stored

    def running(self) -> int:
        with self._lock:
            return len(self._by_collection)

    def running_for(self, collection: str) -> bool:
        with self._lock:
            return collection in self._by_collection

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job["state"] in (*FINAL, "applying"):
            raise Conflict(
                f"job {job_id} is {job['state']}; it can no longer be cancelled", "job_id"
            )
        proc = self._procs.get(job_id)
        self._update(job_id, state="cancelling")
        if proc is not None and proc.is_alive():
            proc.terminate()
        return self.get(job_id)

    def cancel_collection(self, collection: str) -> None:
        job_id = self._by_collection.get(collection)
        if job_id is not None:
            self.cancel(job_id)
            proc = self._procs.get(job_id)
            if proc is not None:
                proc.join(timeout=10)

    def shutdown(self) -> None:
        for job_id, proc in list(self._procs.items()):
            if proc.is_alive():
                self._update(job_id, state="cancelling", error="server shutting down")
                proc.terminate()
                proc.join(timeout=5)

    def _update(self, job_id: str, persist: bool = True, **changes: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.update(changes)
            snapshot = dict(job)
        if persist:
            self.registry.store.put_job(snapshot)

    def _monitor(self, spec: JobSpec, proc: Any, q: Any) -> None:
        result: dict[str, Any] | None = None
        error: str | None = None
        last_persist = 0.0
        while result is None and error is None:
            try:
                msg = q.get(timeout=0.25)
            except queue_mod.Empty:
                if not proc.is_alive():
                    try:  # the last message may land just after the process ends
                        msg = q.get(timeout=0.5)
                    except queue_mod.Empty:
                        error = f"worker exited with code {proc.exitcode}"
                        break
                else:
                    continue
            kind = msg.pop("type")
            if kind == "progress":
                now = time.monotonic()
                persist = now - last_persist > 1.0
                last_persist = now if persist else last_persist
                self._update(spec.job_id, persist=persist, progress=msg)
            elif kind == "done":
                result = msg
            else:
                error = str(msg.get("message"))
        proc.join(timeout=30)
        cancelled = self.get(spec.job_id)["state"] == "cancelling"
        if result is not None and not cancelled:
            try:
                self._update(spec.job_id, state="applying")
                self._apply(spec, result)
                self._update(spec.job_id, state="succeeded", metrics=result["metrics"])
            except Exception as exc:
                log.exception("job %s: applying the new model failed", spec.job_id)
                error = f"applying the new model failed: {exc}"
        if error is not None or cancelled:
            shutil.rmtree(spec.model_dir, ignore_errors=True)
            state = "cancelled" if cancelled else "failed"
            self._update(spec.job_id, state=state, error=None if cancelled else error)
            log.warning("job %s %s: %s", spec.job_id, state, error)
        shutil.rmtree(spec.job_dir, ignore_errors=True)
        with self._lock:
            self._by_collection.pop(spec.collection, None)
            self._procs.pop(spec.job_id, None)
            self._jobs.pop(spec.job_id, None)
            self.finished += 1

    def _apply(self, spec: JobSpec, result: dict[str, Any]) -> None:
        nums = np.load(spec.job_dir / "nums.npy")
        codes = np.load(spec.job_dir / "codes.npy")
        pre = Precomputed(
            int(result["seq"]), {int(n): bytes(c) for n, c in zip(nums, codes, strict=True)}
        )
        version = self.get(spec.job_id)["version"]
        self.registry.activate(spec.collection, version, pre)
        self.registry.store.add_version(spec.collection, version, result["metrics"], spec.job_id)
