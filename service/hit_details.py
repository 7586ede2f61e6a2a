"""What a search hit carries besides its id, when asked for (``SearchRequest.include``): its
code, a bounded preview or the stored item; read from the store for the hits only."""

from __future__ import annotations

from typing import Any

from service.collection import CollectionState, Serving
from service.schemas import Hit, Include
from service.store import ItemStore


def hit_details(
    hits: list[Hit],
    state: CollectionState,
    serving: Serving,
    store: ItemStore,
    include: set[Include],
) -> list[Hit]:
    """``hits`` with the fields of ``include`` filled in (a hit deleted since is left as is)."""
    out = []
    for hit in hits:
        row = store.get_item(state.name, hit.id)
        if row is None:
            out.append(hit)
            continue
        extra: dict[str, Any] = {}
        if "code" in include:
            code = row.code_under(serving.version)
            extra["code"] = code.hex() if code is not None else None
        if include & {"preview", "payload"}:
            value = state.modality.from_bytes(row.payload)
            if "preview" in include:
                extra["preview"] = state.modality.preview(value)
            if "payload" in include:
                extra["payload"] = state.modality.to_json(value)
        out.append(hit.model_copy(update=extra))
    return out
