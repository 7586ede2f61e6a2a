"""Request and response bodies of the HTTP API; every field is described for /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.code_width import CODE_WIDTHS

MetaValue = str | int | float | bool | None
Modality = Literal["text", "image", "vector"]
Include = Literal["code", "preview", "payload"]  # what a search hit may carry besides its id

_ID = Field(min_length=1, max_length=256, description="The item's id, chosen by the client.")
_TEXT = Field(default=None, description="Text item (text collections): a non-empty string.")
_IMAGE = Field(
    default=None,
    description="Image item (image collections): base64 PNG or JPEG; converted to the"
    " collection's image shape (grey or colour) and resized if needed.",
)
_VECTOR = Field(
    default=None, description="Vector item (vector collections): the collection's `dim` floats."
)


def unicode_problem(value: Any) -> str | None:
    """Why ``value`` (a string, or a dict / list holding strings) cannot be stored as UTF-8,
    or None. JSON escapes can smuggle in lone surrogates ("\\ud800") that Python accepts in a
    str but no UTF-8 encoder does."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"contains a lone surrogate (U+{ord(value[exc.start]):04X}) at {exc.start}"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unicode_problem(key)
            if problem is not None:
                return f"key {key!r} {problem}"
            problem = unicode_problem(item)
            if problem is not None:
                return f"value of {key!r} {problem}"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = unicode_problem(item)
            if problem is not None:
                return f"[{i}] {problem}"
    return None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any, info: ValidationInfo) -> Any:
        if info.mode == "json":  # pydantic's JSON parser refuses lone surrogates itself
            return value
        problem = unicode_problem(value)
        if problem is not None:
            raise ValueError(f"not valid Unicode: {problem}")
        return value


# multipart metadata gets the same checks as ItemIn.metadata in a JSON body
METADATA = TypeAdapter(dict[str, MetaValue], config=ConfigDict(allow_inf_nan=False))


# Items -----------------------------------------------------------------------------------------
class Payload(Strict):
    """Exactly one of text, image or vector, matching the collection's modality."""

    text: str | None = _TEXT
    image: str | None = _IMAGE
    vector: list[float] | None = _VECTOR


class ItemIn(Payload):
    id: str = _ID
    metadata: dict[str, MetaValue] = Field(
        default_factory=dict, description="Flat key/value metadata, usable as a search filter."
    )
    code: str | None = Field(
        default=None,
        max_length=2 + CODE_WIDTHS.largest // 4,
        description="The item's code, hex as `encode` gives it, computed elsewhere by the model"
        " version named in `model_version`: stored as given, the item is not encoded here.",
    )
    model_version: int | None = Field(
        default=None,
        description="With `code`: the model version that computed it (it must be"
        " the one the collection serves, or the write is refused with 409).",
    )

    @model_validator(mode="after")
    def _code_names_its_version(self) -> ItemIn:
        if (self.code is None) != (self.model_version is None):
            raise ValueError(
                "code and model_version go together: a code is only meaningful under the model"
                " version that computed it"
            )
        return self


class UpsertRequest(Strict):
    items: list[ItemIn] = Field(
        min_length=1, description="Items to insert; an existing id is overwritten."
    )


class ImportResponse(BaseModel):
    """What a bulk import wrote; batches written before an error stay written."""

    imported: int = Field(description="Items written (an id given twice counts each time).")
    skipped: int = Field(description="Items left because their id was stored (skip_existing).")
    batches: int = Field(description="Transactions the import was written in.")
    seq: int | None = Field(description="The last batch's sequence number (see search min_seq).")
    model_version: int | None = Field(description="Model that encoded them; null: none yet.")


class UpsertResponse(BaseModel):
    upserted: int = Field(description="Items written (duplicates within the batch count once).")
    model_version: int | None = Field(description="Model that encoded them; null: none yet.")
    seq: int = Field(
        description="The write's sequence number: a search with `min_seq` set to it sees it on"
        " any server sharing the data."
    )


class ItemPublic(BaseModel):
    id: str = Field(description="The item's id.")
    text: str | None = Field(default=None, description="Stored text (text collections).")
    image: str | None = Field(
        default=None, description="Stored image as base64 PNG (image collections)."
    )
    vector: list[float] | None = Field(
        default=None, description="Stored vector (vector collections)."
    )
    metadata: dict[str, Any] = Field(description="The item's metadata.")
    code: str | None = Field(description="Hex of the packed code; null when no model yet.")
    model_version: int | None = Field(description="Model version that produced `code`.")


class Message(BaseModel):
    message: str = Field(description="What happened.")


# Collections -----------------------------------------------------------------------------------
class CollectionCreate(Strict):
    name: str = Field(
        min_length=1, max_length=64, description="Letters, digits, '_', '-', '.'; unique."
    )
    modality: Modality = Field(description="What the items are: text, image or vector.")
    bits: int = Field(
        default=32,
        ge=CODE_WIDTHS.smallest,
        le=CODE_WIDTHS.largest,
        multiple_of=CODE_WIDTHS.step,
        description="Code length for retraining: a multiple of 8 in 8..128 (with model_from:"
        " the copied model's, which is the default there).",
    )
    dim: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Vector length (vector collections; required).",
    )
    image_shape: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=3,
        description="[H, W] (grey) or [H, W, C] (image collections; default [28, 28]).",
    )
    description: str = Field(
        default="", max_length=1000, description="Free text shown in listings."
    )
    model_from: str | None = Field(
        default=None,
        description="Start with a copy of this collection's active model (same modality).",
    )


class CollectionPublic(BaseModel):
    name: str = Field(description="Collection name.")
    modality: Modality = Field(description="text, image or vector.")
    items: int = Field(description="Number of stored items.")
    bits: int | None = Field(description="Code length of the active model; null: no model yet.")
    active_version: int | None = Field(description="Model version serving searches.")
    dim: int | None = Field(default=None, description="Vector length (vector collections).")
    image_shape: list[int] | None = Field(
        default=None, description="Image shape (image collections)."
    )
    description: str = Field(default="", description="Free text.")
    created_at: float = Field(description="Unix time of creation.")
    ready: bool = Field(description="True when a model and its index are loaded.")


class CollectionsPublic(BaseModel):
    data: list[CollectionPublic] = Field(description="Collections, by name.")
    count: int = Field(description="How many.")


# Encode / search / denoise ---------------------------------------------------------------------
class EncodeRequest(Strict):
    items: list[Payload] = Field(min_length=1, description="Items to encode (nothing is stored).")
    continuous: bool = Field(
        default=False, description="Also return the code units' values in [0, 1]."
    )


class EncodeResponse(BaseModel):
    bits: int = Field(description="Code length.")
    model_version: int = Field(description="Model that produced the codes.")
    codes: list[str] = Field(description="Hex of the packed codes (numpy.packbits bit order).")
    continuous: list[list[float]] | None = Field(
        default=None, description="Per item, `bits` activations in [0, 1] (when asked for)."
    )


class SearchRequest(Strict):
    """Give exactly one query (text, image, vector, id or code) and max_distance and/or k."""

    text: str | None = _TEXT
    image: str | None = _IMAGE
    vector: list[float] | None = _VECTOR
    id: str | None = Field(
        default=None, max_length=256, description="Use a stored item as the query."
    )
    code: str | None = Field(
        default=None, max_length=1024, description="Raw code: hex of bits/8 packed bytes."
    )
    max_distance: int | None = Field(
        default=None, ge=0, description="Hamming radius, inclusive (0..bits)."
    )
    k: int | None = Field(
        default=None, ge=1, description="At most k hits; widens past max_distance."
    )
    filter: dict[str, MetaValue] | None = Field(
        default=None, description="Metadata equality filter: every key must match."
    )
    min_seq: int | None = Field(
        default=None,
        ge=0,
        description="Read your writes: search only once this server holds every write up to"
        " this sequence number (an upsert's `seq`), whichever server took the write.",
    )
    include: list[Include] = Field(
        default_factory=list,
        max_length=3,
        description="Per hit also: `code` (hex), `preview` (text: its opening 280 characters;"
        " image: a PNG thumbnail at most 64 pixels a side; vector: its first 16 values) or"
        " `payload` (the stored item, as read_item gives it).",
    )


def _absent(value: Any) -> bool:
    return value is None


class Hit(BaseModel):
    id: str = Field(description="Item id.")
    distance: int = Field(description="Hamming distance to the query code.")
    metadata: dict[str, Any] = Field(description="The item's metadata.")
    # only when asked for with `include`: left out of the JSON otherwise
    code: str | None = Field(
        default=None, exclude_if=_absent, description="Hex of its code (include `code`)."
    )
    preview: str | list[float] | None = Field(
        default=None,
        exclude_if=_absent,
        description="Bounded preview of the item (include `preview`).",
    )
    payload: str | list[float] | None = Field(
        default=None,
        exclude_if=_absent,
        description="The stored text, base64 PNG or vector (include `payload`).",
    )


class SearchResponse(BaseModel):
    hits: list[Hit] = Field(description="Sorted by distance, then id.")
    took_ms: float = Field(description="Server time spent on the search, in milliseconds.")
    probes: int = Field(description="Hash-table probes the index made.")
    model_version: int = Field(description="Model version whose codes were searched.")
    bits: int = Field(description="Code length.")
    code: str = Field(description="The query's code (hex).")
    widened: bool = Field(description="True when the search went past max_distance to find k.")
    truncated: bool = Field(
        description="True when a radius-only search matched more than max_k items (the"
        " server's limit) and only the nearest max_k are returned."
    )
    searched_distance: int = Field(description="Largest Hamming distance the search covered.")


class DenoiseRequest(Strict):
    items: list[Payload] = Field(min_length=1, description="(Corrupted) items to reconstruct.")


class Term(BaseModel):
    term: str = Field(description="A vocabulary term.")
    weight: float = Field(description="Its weight in the reconstructed bag of words.")


class Denoised(BaseModel):
    image: str | None = Field(default=None, description="Reconstruction as base64 PNG (images).")
    terms: list[Term] | None = Field(default=None, description="Top reconstructed terms (text).")
    vector: list[float] | None = Field(default=None, description="Reconstructed vector (vectors).")


class DenoiseResponse(BaseModel):
    model_version: int = Field(description="Model that reconstructed the items.")
    items: list[Denoised] = Field(description="One reconstruction per item.")


# Admin -----------------------------------------------------------------------------------------
class RetrainRequest(Strict):
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Training settings (training.config.TrainConfig fields, e.g. epochs, bits).",
    )


class Job(BaseModel):
    id: str = Field(description="Job id.")
    collection: str = Field(description="Collection being retrained.")
    state: str = Field(
        description="queued, training, applying, succeeded, failed, cancelling or cancelled."
    )
    settings: dict[str, Any] = Field(description="Training settings asked for.")
    progress: dict[str, Any] = Field(description="Latest progress: stage, epoch, epochs, loss.")
    metrics: dict[str, Any] | None = Field(
        default=None, description="Training metrics when succeeded."
    )
    error: str | None = Field(default=None, description="Why it failed.")
    version: int | None = Field(default=None, description="Model version the job produces.")
    created_at: float = Field(description="Unix time the job started.")


class ModelVersion(BaseModel):
    version: int = Field(description="Version number.")
    active: bool = Field(description="True for the version serving searches.")
    created_at: float = Field(description="Unix time it was registered.")
    job_id: str | None = Field(description="Job that trained it; null when copied or built.")
    metrics: dict[str, Any] = Field(description="Training / evaluation metrics.")


class ModelVersions(BaseModel):
    data: list[ModelVersion] = Field(description="Versions, oldest first.")
    count: int = Field(description="How many.")


class Health(BaseModel):
    status: str = Field(description="ok, or what is missing.")
    device: str | None = Field(default=None, description="Device models run on.")
    collections: dict[str, str] | None = Field(default=None, description="Per collection: state.")
