"""Retraining jobs: one worker process per job, one job per collection, monitored by a thread.

States: queued -> training -> applying -> succeeded | failed | cancelled. The model and index are
only swapped by ``Registry.activate`` after the worker succeeded; anything else leaves the
serving version untouched and removes the half-made version directory.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import threading
import time
import uuid
from typing import Any

import numpy as np

from models.code_width import CODE_WIDTHS
from service.collection import CollectionState
from service.errors import Conflict, InvalidInput, NotFound, Unavailable
from service.registry import Precomputed, Registry
from service.store import HEARTBEAT_S, VersionRecord
from service.worker import JobSpec, run_job

log = logging.getLogger(__name__)

FINAL = ("succeeded", "failed", "cancelled")


def _check_bits(bits: Any) -> None:
    """Refuse a code length the index cannot hold now, not after training."""
    problem = None if bits is None else CODE_WIDTHS.problem(bits)
    if problem is not None:
        raise InvalidInput(problem, "settings.bits")


class JobManager:
    def __init__(self, registry: Registry, torch_threads: int = 0) -> None:
        self.registry = registry
        self.torch_threads = torch_threads
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}  # live jobs, also persisted in SQLite
        self._procs: dict[str, Any] = {}
        self._monitors: dict[str, threading.Thread] = {}
        self._by_collection: dict[str, str] = {}
        self._ctx = mp.get_context("spawn")  # no fork: the server holds threads and locks
        self.finished = 0

    def start(self, collection: str, settings: dict[str, Any]) -> dict[str, Any]:
        state = self.registry.get(collection)
        self.registry.backend.validate(settings)
        _check_bits(self._with_defaults(state.spec, settings).get("bits"))
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
                "owner": os.getpid(),  # other servers sharing the store leave its collection be
            }
            try:
                elsewhere = self.registry.store.claim_job(job)
            except Exception:
                log.exception("job %s: cannot record it", job_id)
                raise Unavailable(
                    f"cannot start a retraining job for {collection!r} now (see the server log);"
                    " nothing changed, try again"
                ) from None
            if elsewhere is not None:
                raise Conflict(
                    f"job {elsewhere} (on another server) is already retraining {collection!r};"
                    " wait for it or cancel it there",
                    "collection",
                )
            self._jobs[job_id] = job
            self._by_collection[collection] = job_id
        spec = JobSpec(
            job_id=job_id,
            collection=collection,
            modality=state.modality,
            settings=self._with_defaults(state.spec, settings),
            snapshot=self.registry.store.snapshot_reader(collection),
            model_dir=self.registry.model_dir(collection, version),
            job_dir=self.registry.data_dir / "jobs" / job_id,
            backend=self.registry.backend,
            torch_threads=self.torch_threads,
        )
        proc = None
        try:
            q = self._ctx.Queue()
            proc = self._ctx.Process(
                target=run_job, args=(spec, q), daemon=True, name=f"job-{job_id}"
            )
            proc.start()
            monitor = threading.Thread(
                target=self._monitor,
                args=(spec, state, proc, q),
                daemon=True,
                name=f"monitor-{job_id}",
            )
            with self._lock:
                self._procs[job_id] = proc
                self._monitors[job_id] = monitor
            self._transition(job_id, ("queued",), "training")
            monitor.start()
        except Exception:
            log.exception("job %s: cannot start", job_id)
            self._abandon(spec, proc)
            raise Unavailable(
                f"cannot start a retraining job for {collection!r} now (see the server log);"
                " nothing changed, try again"
            ) from None
        return self.get(job_id)

    def _abandon(self, spec: JobSpec, proc: Any) -> None:
        """Undo a start that failed half-way, so the collection is free to retrain again."""
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout=10)
        self._finish(spec.job_id, state="failed", error="the job could not be started")
        shutil.rmtree(spec.job_dir, ignore_errors=True)
        shutil.rmtree(spec.model_dir, ignore_errors=True)
        with self._lock:
            self._forget(spec)

    def _forget(self, spec: JobSpec) -> None:
        """Drop the job's in-memory bookkeeping; the caller holds ``_lock``."""
        if self._by_collection.get(spec.collection) == spec.job_id:  # not a newer job's
            del self._by_collection[spec.collection]
        self._procs.pop(spec.job_id, None)
        self._jobs.pop(spec.job_id, None)
        self._monitors.pop(spec.job_id, None)

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
        """A job retrains ``collection`` here or on another server sharing the store."""
        with self._lock:
            if collection in self._by_collection:
                return True
        return self.registry.store.running_job(collection) is not None

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)  # raises NotFound; a finished job is no longer live
        # check-and-set under the lock: the monitor moves to 'applying' under it too
        if not self._transition(job_id, ("queued", "training"), "cancelling"):
            state = self.get(job_id)["state"] if job["state"] not in FINAL else job["state"]
            raise Conflict(f"job {job_id} is {state}; it can no longer be cancelled", "job_id")
        self._terminate(job_id)
        return self.get(job_id)

    def cancel_collection(self, collection: str) -> None:
        """Cancel the collection's job and wait for its monitor to be done with it, so that
        nothing the job leaves behind lands in a collection re-created under the same name.
        A job already applying its result is waited for, not refused: only the swap is left."""
        with self._lock:
            job_id = self._by_collection.get(collection)
            monitor = self._monitors.get(job_id) if job_id is not None else None
        if job_id is None:
            return
        if self._transition(job_id, ("queued", "training"), "cancelling"):
            self._terminate(job_id)
        proc = self._procs.get(job_id)
        if proc is not None:
            proc.join(timeout=10)
        if monitor is not None:
            monitor.join(timeout=30)

    def _terminate(self, job_id: str) -> None:
        proc = self._procs.get(job_id)
        if proc is not None and proc.is_alive():
            proc.terminate()

    def shutdown(self, timeout: float = 60.0) -> None:
        """Cancel training jobs and wait for every monitor to record its job's final state,
        so none of them touches the store after the caller closes it. A job already applying
        its result is left to finish (the worker is done; only the swap remains)."""
        for job_id, proc in list(self._procs.items()):
            if self._transition(job_id, ("queued", "training"), "cancelling"):
                self._update(job_id, error="server shutting down")
                if proc.is_alive():
                    proc.terminate()
        deadline = time.monotonic() + timeout
        for thread in list(self._monitors.values()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("retraining monitor %s did not stop in time", thread.name)

    def _transition(self, job_id: str, allowed: tuple[str, ...], state: str) -> bool:
        """Move a live job to ``state`` only from one of ``allowed``; atomic with cancel."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job["state"] not in allowed:
                return False
            job["state"] = state
            snapshot = dict(job)
        self.registry.store.put_job(snapshot)
        return True

    def _update(self, job_id: str, persist: bool = True, **changes: Any) -> None:
        if changes.get("state") in FINAL:
            self._end(job_id, changes)
            return
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.update(changes)
            snapshot = dict(job)
        if persist:
            self.registry.store.put_job(snapshot)

    def _end(self, job_id: str, changes: dict[str, Any]) -> None:
        """Record a final state: stored first, then shown here with the collection freed, in one
        step. A job seen finished here is finished in the store, so the next one can start at
        once (on a slow store, Milvus, a retrain right after a failure was refused otherwise)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            snapshot = {**job, **changes}
        try:
            self.registry.store.put_job(snapshot)
        finally:  # a failure to store it must not keep the job live here
            with self._lock:
                job.update(changes)
                if self._by_collection.get(job["collection"]) == job_id:
                    del self._by_collection[job["collection"]]

    def _heartbeat(self, job_id: str) -> None:
        """Rewrite a live job's record, so servers on other hosts see its lease held."""
        with self._lock:
            job = self._jobs.get(job_id)
            snapshot = dict(job) if job is not None and job["state"] not in FINAL else None
        if snapshot is not None:
            try:
                self.registry.store.put_job(snapshot)
            except Exception:
                log.exception("job %s: cannot renew its lease", job_id)

    def _finish(self, job_id: str, **changes: Any) -> None:
        """Record a final state; a failure to persist it must not undo what happened."""
        try:
            self._update(job_id, **changes)
        except Exception:
            log.exception("job %s: cannot record its final state %s", job_id, changes)

    def _monitor(self, spec: JobSpec, owner: CollectionState, proc: Any, q: Any) -> None:
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
                    if time.monotonic() - last_persist > HEARTBEAT_S:  # renew the job's lease
                        last_persist = time.monotonic()
                        self._heartbeat(spec.job_id)
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
        try:
            self._conclude(spec, owner, result, error)
        finally:
            shutil.rmtree(spec.job_dir, ignore_errors=True)
            with self._lock:
                self._forget(spec)
                self.finished += 1

    def _conclude(
        self,
        spec: JobSpec,
        owner: CollectionState,
        result: dict[str, Any] | None,
        error: str | None,
    ) -> None:
        swapped = False
        applying = result is not None and self._transition(spec.job_id, ("training",), "applying")
        if applying:
            assert result is not None
            try:
                self._apply(spec, result)
                swapped = True
                self._update(spec.job_id, state="succeeded", metrics=result["metrics"])
                return
            except Exception as exc:
                log.exception("job %s: applying the new model failed", spec.job_id)
                error = f"applying the new model failed: {exc}"
                swapped = swapped or self._is_active(spec)
            if swapped:  # the new version is committed and serving: only bookkeeping failed
                self._finish(spec.job_id, state="succeeded", metrics=result["metrics"])
                return
        cancelled = not applying and self.get(spec.job_id)["state"] == "cancelling"
        if error is None and not cancelled:
            error = "the worker finished without a result"
        # the version was never activated, so its directory is a half-made leftover; unless the
        # collection was deleted meanwhile: a new one of the same name may own that path now
        if self.registry.states.get(spec.collection) is owner:
            shutil.rmtree(spec.model_dir, ignore_errors=True)
        state = "cancelled" if cancelled else "failed"
        if cancelled:  # keep the reason cancel() or shutdown() gave, if any
            self._finish(spec.job_id, state=state)
        else:
            self._finish(spec.job_id, state=state, error=error)
        log.warning("job %s %s: %s", spec.job_id, state, error)

    def _is_active(self, spec: JobSpec) -> bool:
        try:
            version = self.get(spec.job_id)["version"]
            return self.registry.store.active_version(spec.collection) == version
        except Exception:  # cannot tell: keep the directory rather than risk the serving one
            log.exception("job %s: cannot read the active version", spec.job_id)
            return True

    def _apply(self, spec: JobSpec, result: dict[str, Any]) -> None:
        nums = np.load(spec.job_dir / "nums.npy")
        codes = np.load(spec.job_dir / "codes.npy")
        pre = Precomputed(
            int(result["seq"]), {int(n): bytes(c) for n, c in zip(nums, codes, strict=True)}
        )
        version = self.get(spec.job_id)["version"]
        record = VersionRecord(dict(result["metrics"]), spec.job_id)
        # the version row and active_version commit together with the codes (one transaction)
        self.registry.activate(spec.collection, version, pre, record)
