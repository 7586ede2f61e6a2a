"""Collections: list, read, create (admin), delete (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from service.collection import CollectionState
from service.deps import AdminDep, RuntimeDep
from service.modalities import MODALITIES
from service.routes.common import CollectionPath
from service.schemas import CollectionCreate, CollectionPublic, CollectionsPublic, Message
from service.utf8_route import Utf8Route

router = APIRouter(prefix="/collections", tags=["collections"], route_class=Utf8Route)


def public(state: CollectionState) -> CollectionPublic:
    serving = state.serving
    shape = state.spec.get("image_shape")
    return CollectionPublic(
        name=state.name,
        modality=state.modality.name,  # type: ignore[arg-type]
        items=state.size,
        bits=serving.model.bits if serving else None,
        active_version=serving.version if serving else None,
        dim=state.spec.get("dim"),
        image_shape=list(shape) if shape else None,
        description=state.spec.get("description", ""),
        created_at=state.created_at,
        ready=serving is not None,
    )


@router.get("", response_model=CollectionsPublic)
def read_collections(runtime: RuntimeDep) -> CollectionsPublic:
    """List every collection."""
    states = sorted(runtime.registry.states.values(), key=lambda s: s.name)
    return CollectionsPublic(data=[public(s) for s in states], count=len(states))


@router.get("/{collection}", response_model=CollectionPublic)
def read_collection(collection: CollectionPath, runtime: RuntimeDep) -> CollectionPublic:
    """One collection: modality, item count, active model version."""
    return public(runtime.registry.get(collection))


@router.post(
    "",
    response_model=CollectionPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminDep],
)
def create_collection(body: CollectionCreate, runtime: RuntimeDep) -> CollectionPublic:
    """Create an empty collection (admin); retrain it, or start from another's model."""
    spec: dict[str, Any] = {"bits": body.bits, "description": body.description}
    if body.model_from is not None and "bits" not in body.model_fields_set:
        spec["bits"] = None  # left out, the bits are the copied model's, not the default
    modality = MODALITIES[body.modality]
    spec.update(modality.spec_keys(body.dim, body.image_shape, body.model_from is not None))
    state = runtime.registry.create(body.name, body.modality, spec, body.model_from)
    return public(state)


@router.delete("/{collection}", response_model=Message, dependencies=[AdminDep])
def delete_collection(collection: CollectionPath, runtime: RuntimeDep) -> Message:
    """Delete a collection, its items and model versions (admin); cancels its retraining (a
    retrain already swapping in its model is let finish first, then deleted with the rest)."""
    runtime.registry.get(collection)
    runtime.jobs.cancel_collection(collection)
    runtime.registry.delete(collection)
    return Message(message=f"collection {collection!r} deleted")
