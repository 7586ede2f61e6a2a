"""Response bodies of the endpoints the web page added (``routes/visuals.py``); each is also
useful on its own. Kept apart from ``schemas.py`` so the two change independently."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Evaluation(BaseModel):
    data: str = Field(description="The data set the model was evaluated on.")
    k: int = Field(description="Cut-off of precision@k.")
    precision_at_k: float = Field(description="The model's precision@k.")
    baselines: dict[str, float] = Field(
        description="precision@k of the baselines scored under the same protocol (pca_itq, ...)."
    )


class ModelSummary(BaseModel):
    collection: str = Field(description="Collection name.")
    version: int = Field(description="Active model version.")
    bits: int = Field(description="Code length.")
    trained_at: float | None = Field(description="Unix time the version was registered.")
    train_seconds: float | None = Field(default=None, description="Training time.")
    n_train: int | None = Field(default=None, description="Items it was trained on.")
    dead_bits: list[int] = Field(
        default_factory=list, description="Bits (nearly) always on or off on the training items."
    )
    evaluations: list[Evaluation] = Field(
        default_factory=list, description="Retrieval evaluations recorded with the model."
    )


class Tangents(BaseModel):
    id: str = Field(description="The item whose tangent directions these are.")
    image: str = Field(description="The item, base64 PNG.")
    singular_values: list[float] = Field(description="Largest singular values of the Jacobian.")
    directions: list[str] = Field(
        description="Matching right singular vectors as base64 PNGs (mid-grey is 0)."
    )


class Insights(BaseModel):
    """What the model learned, from the collection's own items; computed once per version."""

    collection: str = Field(description="Collection name.")
    model_version: int = Field(description="Model version the pictures are of.")
    bits: int = Field(description="Code length.")
    modality: str = Field(description="text, image or vector.")
    items: int = Field(description="Items used (a seeded sample of large collections).")
    map: dict[str, Any] | None = Field(
        description="2-D map of the codes: x, y, ids, and per metadata key (color) each item's"
        " value."
    )
    bit_rates: list[float] = Field(description="Per bit, the share of items with it on.")
    reconstructions: list[dict[str, str]] | None = Field(
        description="Image models: id, original and reconstruction (base64 PNGs)."
    )
    tangents: Tangents | None = Field(
        description="Image models: the encoder's tangent directions at one item."
    )
    field: dict[str, Any] | None = Field(
        description="Image and vector models: grid rows [a, b, da, db] of r(x) - x on the items'"
        " principal plane, and the items' own points there."
    )
