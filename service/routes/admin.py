"""Admin (Bearer token): retraining jobs and model versions. Absent without a token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from service.deps import AdminDep, RuntimeDep
from service.errors import Conflict, NotFound
from service.routes.collections import public
from service.routes.common import CollectionPath, JobPath, VersionPath
from service.schemas import CollectionPublic, Job, ModelVersion, ModelVersions, RetrainRequest
from service.utf8_route import Utf8Route

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep], route_class=Utf8Route)


def _job(job: dict[str, Any]) -> Job:
    return Job(**{k: v for k, v in job.items() if k in Job.model_fields})


@router.post(
    "/collections/{collection}/retrain",
    response_model=Job,
    status_code=status.HTTP_202_ACCEPTED,
)
def retrain_collection(
    collection: CollectionPath, body: RetrainRequest, runtime: RuntimeDep
) -> Job:
    """Start retraining on the stored items in a worker process; 409 if one is running."""
    return _job(runtime.jobs.start(collection, body.settings))


@router.get("/jobs/{job_id}", response_model=Job)
def read_job(job_id: JobPath, runtime: RuntimeDep) -> Job:
    """A job's state, progress (stage, epoch, loss) and, when done, its metrics."""
    return _job(runtime.jobs.get(job_id))


@router.post("/jobs/{job_id}/cancel", response_model=Job)
def cancel_job(job_id: JobPath, runtime: RuntimeDep) -> Job:
    """Stop a running job; the serving version is untouched."""
    return _job(runtime.jobs.cancel(job_id))


@router.get("/collections/{collection}/models", response_model=ModelVersions)
def read_models(collection: CollectionPath, runtime: RuntimeDep) -> ModelVersions:
    """Model versions of a collection with their metrics."""
    state = runtime.registry.get(collection)
    active = state.serving.version if state.serving else None
    rows = runtime.store.versions(collection)
    data = [ModelVersion(active=row["version"] == active, **row) for row in rows]
    return ModelVersions(data=data, count=len(data))


@router.post("/collections/{collection}/models/{version}/activate", response_model=CollectionPublic)
def activate_model(
    collection: CollectionPath, version: VersionPath, runtime: RuntimeDep
) -> CollectionPublic:
    """Serve another version (roll forward or back): re-encodes every item, then swaps."""
    state = runtime.registry.get(collection)
    if version not in {row["version"] for row in runtime.store.versions(collection)}:
        raise NotFound(f"collection {collection!r} has no model version {version}", "version")
    if runtime.jobs.running_for(collection):
        raise Conflict(f"a retraining job is running on {collection!r}; wait for it", "collection")
    runtime.registry.activate(collection, version)
    return public(state)
