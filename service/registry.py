"""Collections: create, delete, load at start-up, item writes, and model-version swaps.

The SQLite store is the truth; the in-memory state (item table, filter bitmaps, index) is rebuilt
from it at start-up (the index from its snapshot when nothing was written since it was saved), and
every write commits to SQLite before it touches memory, so a request is only acknowledged once its
data is durable.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import snapshot
from service.backend import Backend, Model
from service.code_column import ColumnedIndex
from service.codes import hex_bytes
from service.collection import CollectionState, Serving
from service.config import InputLimits
from service.errors import Conflict, InvalidInput, NotFound, Unavailable, model_rejected
from service.modalities import modality_of
from service.model_runner import infer
from service.store import (
    CodeIndex,
    CollectionGone,
    ItemRow,
    ItemStore,
    ItemWrite,
    NameTaken,
    VersionMoved,
    VersionRecord,
)
from training.artifact import copy_model

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DELETED_PREFIX = ".deleted-"  # no collection name starts with '.'
IndexFactory = Callable[[int], CodeIndex]
RunModel = Callable[[Callable[[Any], Any], Any], Any]  # (model method, items) -> its result


@dataclass(frozen=True)
class NewItem:
    id: str
    value: Any  # text / base64 image / list of floats, as in the JSON
    metadata: dict[str, Any]
    field: str  # where it sits in the request, for error messages
    code: str | None = None  # hex, computed elsewhere by model version ``code_version``
    code_version: int | None = None


@dataclass(frozen=True)
class Precomputed:
    """Codes a retraining worker already computed for items with seq <= ``seq``."""

    seq: int
    codes: dict[int, bytes]


def given_codes(name: str, items: Sequence[NewItem], serving: Serving | None) -> list[bytes | None]:
    """The codes the items came with (None where they came without), checked against the
    model version that serves: a code of another version, or of another width, is refused."""
    codes: list[bytes | None] = [None] * len(items)
    for k, item in enumerate(items):
        if item.code is None:
            continue
        field = f"{item.field}.code"
        if serving is None or item.code_version != serving.version:
            serves = "no model yet" if serving is None else f"model version {serving.version}"
            raise Conflict(
                f"{field} was computed by model version {item.code_version}, but collection"
                f" {name!r} serves {serves}: encode it with the serving version, or send the"
                " item without a code",
                field,
            )
        codes[k] = hex_bytes(item.code, serving.model.bits, field)
    return codes


def default_index_factory(bits: int) -> CodeIndex:
    from service.index import HammingIndex

    return HammingIndex(bits)


class Registry:
    def __init__(
        self,
        store: ItemStore,
        backend: Backend,
        data_dir: Path,
        device: str,
        limits: InputLimits,
        index_factory: IndexFactory = default_index_factory,
        run_model: RunModel = infer,
        snapshots: bool = False,
    ) -> None:
        self.store = store
        self.backend = backend
        self.data_dir = data_dir
        self.device = device
        self.limits = limits
        self.index_factory = index_factory
        self.run_model = run_model  # the server's ModelRunner.call; offline, a direct call
        self.snapshots = snapshots  # start from saved indexes (service/snapshot.py)
        self.states: dict[str, CollectionState] = {}
        self.broken: dict[str, str] = {}  # collection -> why its model could not be loaded
        self._create_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._synced = 0  # the store's outside_commits() at the last sync

    # lookup ---------------------------------------------------------------------------------
    def get(self, name: str) -> CollectionState:
        state = self.states.get(name)
        if state is None:
            raise NotFound(f"no collection named {name!r}", "collection")
        return state

    def serving(self, name: str) -> tuple[CollectionState, Serving]:
        state = self.get(name)
        serving = state.serving
        if serving is None:
            raise Conflict(
                f"collection {name!r} has no trained model yet; retrain it"
                " (POST /v1/admin/collections/{c}/retrain) or activate a version",
                "collection",
            )
        return state, serving

    def collection_dir(self, name: str) -> Path:
        return self.data_dir / "collections" / name

    def model_dir(self, name: str, version: int) -> Path:
        return self.collection_dir(name) / "models" / f"v{version}"

    def next_version(self, name: str) -> int:
        used = [v["version"] for v in self.store.versions(name)]
        root = self.collection_dir(name) / "models"
        if root.exists():
            used += [int(p.name[1:]) for p in root.iterdir() if re.fullmatch(r"v\d+", p.name)]
        return max(used, default=0) + 1

    # start-up -------------------------------------------------------------------------------
    def load(self) -> None:
        root = self.data_dir / "collections"
        for doomed in root.glob(f"{DELETED_PREFIX}*") if root.exists() else ():
            self._remove_dir(doomed)  # set aside by a delete that stopped before removing it
        self._synced = self.store.outside_commits()
        for row in self.store.collections():
            state = self._new_state(row.name, row.modality, row.spec, row.created_at)
            self.states[row.name] = state
            self._serve_stored(state, row.active_version, store_fresh=True)

    def _serve_stored(
        self, state: CollectionState, version: int | None, store_fresh: bool = False
    ) -> None:
        """Fill ``state`` from the store: its items, and ``version``'s model with an index of
        the stored codes. A code from another version (left by an activation that did not
        finish, or written by another server just before it activated ``version``) is
        re-encoded like a missing one; ``store_fresh`` also stores those codes (at start-up)."""
        seen = self.store.max_seq()  # before reading: later writes come again through sync
        keys = self.store.item_keys(state.name)
        try:
            serving = None
            if version is not None:
                model = self._load_model(state, version)
                stale = self.store.stale_nums(state.name, version)
                index = self._saved_index(state, version, model.bits, seen, len(keys), stale)
                if index is None:
                    present = [
                        (num, code)
                        for num, _, _, code in keys
                        if code is not None and num not in stale
                    ]
                    if stale:
                        log.warning("collection %s: re-encoding %d item(s)", state.name, len(stale))
                        fresh = self._encode_nums(state, model, stale)
                        if store_fresh:
                            self.store.set_codes(
                                state.name, version, sorted(fresh.items()), version
                            )
                        present += fresh.items()
                    index = self._build_index(model.bits, present)
                serving = Serving(version, model, index)
                log.info("collection %s: model v%d, %d items", state.name, version, len(keys))
        except Exception as exc:  # one broken model must not stop the others from serving
            log.exception("collection %s: cannot load model v%s", state.name, version)
            self.broken[state.name] = f"model v{version}: {exc}"
        with state.write_lock:
            state.reload((num, item_id, meta_json) for num, item_id, meta_json, _ in keys)
            if serving is not None:
                state.serving = serving
                self.broken.pop(state.name, None)
            state.applied_seq = seen

    def _saved_index(
        self, state: CollectionState, version: int, bits: int, seq: int, items: int, stale: set[int]
    ) -> ColumnedIndex | None:
        """The index saved once writes settled, if it holds exactly what the store does."""
        if not self.snapshots or stale:  # stale codes: the store needs them re-encoded anyway
            return None
        directory = self.collection_dir(state.name) / "index"
        inner = snapshot.load(directory, state.name, version, bits, seq, items)
        if inner is None:
            return None
        ids, codes = inner.codes()
        return ColumnedIndex.holding(inner, bits, ids, codes)

    def caught_up(self) -> bool:
        """Every other process's commit so far is applied in memory (none since ``sync``)."""
        return self.store.outside_commits() == self._synced

    # following other servers ------------------------------------------------------------------
    def sync(self, force: bool = False) -> None:
        """Catch up with what other processes sharing the store committed: collections created
        or deleted, model versions activated, items written or deleted. Cheap when nothing
        happened (one query); ``force`` reads the changes even then."""
        with self._sync_lock:
            seen = self.store.max_seq()
            token = self.store.outside_commits()
            if token == self._synced and not force:
                # only this process wrote since the last sync, and it applies its own writes
                for each in list(self.states.values()):
                    each.applied_seq = max(each.applied_seq, seen)
                return
            with self._create_lock:  # not while this process creates or deletes one itself
                rows = {row.name: row for row in self.store.collections()}
                for name in [n for n in list(self.states) if n not in rows]:
                    log.info("collection %s was deleted by another server", name)
                    self.states.pop(name, None)
                    self.broken.pop(name, None)
                for name, row in rows.items():
                    if name not in self.states:
                        log.info("collection %s was created by another server", name)
                        new = self._new_state(row.name, row.modality, row.spec, row.created_at)
                        self._serve_stored(new, row.active_version)
                        self.states[name] = new
            for name, row in rows.items():
                state = self.states.get(name)
                if state is None:
                    continue
                serving = state.serving
                active = row.active_version
                if active is not None and (serving is None or serving.version != active):
                    log.info("collection %s: following model v%d from the store", name, active)
                    with state.activation_lock:
                        self._serve_stored(state, active)
                else:
                    self._apply_changes(state)
            self._synced = token

    def _apply_changes(self, state: CollectionState) -> None:
        """Items written or deleted by others since ``state.applied_seq``, into memory."""
        with state.write_lock:
            rows, gone = self.store.changed_since(state.name, state.applied_seq)
            if not rows and not gone:
                return
            serving = state.serving
            # first: a deleted id may have been written again since
            if gone and serving is not None:
                serving.index.remove(np.asarray([num for _, num in gone], dtype=np.int64))
            state.forget([num for _, num in gone])
            state.remember([(row.num, row.id, row.metadata) for row in rows])
            codes: dict[int, bytes] = {}
            stale = []
            for row in rows:
                code = row.code_under(serving.version) if serving is not None else None
                if code is not None:
                    codes[row.num] = code
                else:
                    stale.append(row)
            if serving is not None:
                if stale:
                    codes.update(self._encode_rows(state, serving.model, [stale]))
                if codes:
                    nums = np.fromiter(codes, dtype=np.int64, count=len(codes))
                    packed = np.frombuffer(b"".join(codes.values()), dtype=np.uint8)
                    serving.index.add(nums, packed.reshape(len(codes), -1))
            last = max([r.seq for r in rows] + [seq for seq, _ in gone])
            state.applied_seq = max(state.applied_seq, last)

    def _new_state(
        self, name: str, modality: str, spec: dict[str, Any], created_at: float
    ) -> CollectionState:
        return CollectionState(name, modality_of(modality, spec, self.limits), created_at)

    def _load_model(self, state: CollectionState, version: int) -> Model:
        directory = self.model_dir(state.name, version)
        if not directory.exists():
            raise NotFound(f"collection {state.name!r} has no model version {version}", "version")
        model = self.backend.load(directory, self.device)
        if model.modality != state.modality.name:
            raise Conflict(
                f"model v{version} is for {model.modality} items; {state.name!r} holds"
                f" {state.modality.name}",
                "version",
            )
        shape = state.modality.input_shape
        if shape is not None and tuple(model.input_shape) != shape:
            raise Conflict(
                f"model v{version} takes input shape {tuple(model.input_shape)}; the collection's"
                f" items have shape {shape}",
                "version",
            )
        return model

    def _build_index(self, bits: int, codes: Sequence[tuple[int, bytes]]) -> ColumnedIndex:
        index = ColumnedIndex(self.index_factory(bits), bits)
        if codes:
            ids = np.fromiter((num for num, _ in codes), dtype=np.int64, count=len(codes))
            packed = np.frombuffer(b"".join(code for _, code in codes), dtype=np.uint8)
            index.add(ids, packed.reshape(len(codes), bits // 8))
        return index

    def _encode_rows(
        self, state: CollectionState, model: Model, rows: Iterable[list[ItemRow]]
    ) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for chunk in rows:
            values = [state.modality.from_bytes(row.payload) for row in chunk]
            codes = self.run_model(model.encode, state.modality.batch(values))
            out.update((row.num, bytes(code)) for row, code in zip(chunk, codes, strict=True))
        return out

    def _encode_nums(
        self, state: CollectionState, model: Model, nums: set[int]
    ) -> dict[int, bytes]:
        chunks = (
            [r for r in chunk if r.num in nums] for chunk in self.store.iter_items(state.name)
        )
        return self._encode_rows(state, model, (c for c in chunks if c))

    # collections ----------------------------------------------------------------------------
    def create(
        self, name: str, modality: str, spec: dict[str, Any], model_from: str | None = None
    ) -> CollectionState:
        if not NAME.match(name):
            raise InvalidInput(
                "name must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or"
                " digit",
                "name",
            )
        source = None
        if model_from is not None:
            source = self.states.get(model_from)
            if source is None:
                raise NotFound(f"no collection named {model_from!r}", "model_from")
        with self._create_lock:  # check-then-insert: two creates of one name must not race
            return self._create(name, modality, spec, source)

    def _create(
        self, name: str, modality: str, spec: dict[str, Any], source: CollectionState | None
    ) -> CollectionState:
        model_from = source.name if source is not None else None
        if name in self.states:
            raise Conflict(f"collection {name!r} already exists", "name")
        serving = source.serving if source is not None else None
        if source is not None:
            if serving is None:
                raise Conflict(f"collection {model_from!r} has no model to copy", "model_from")
            if source.modality.name != modality:
                raise InvalidInput(
                    f"model_from {model_from!r} holds {source.modality.name} items, not {modality}",
                    "model_from",
                )
            _check_copied_spec(spec, source, serving.model.bits)
            spec = {**source.spec, **{k: v for k, v in spec.items() if k == "description"}}
            spec["bits"] = serving.model.bits  # retrains keep the copied code length
        try:
            self.store.create_collection(name, modality, spec)
        except NameTaken:  # another process sharing the store got there first
            raise Conflict(f"collection {name!r} already exists", "name") from None
        # the name had no row, so a directory under it was left by a delete that was cut short
        self._remove_dir(self._set_aside(name))
        state = self._new_state(name, modality, spec, time.time())
        if source is None or serving is None:
            self.states[name] = state
            return state
        # no write lands in the new collection before it serves the copy, so a failure can
        # take it back whole, and a retry is not refused as a duplicate
        with state.activation_lock, state.write_lock:
            self.states[name] = state
            try:
                # on disk before the version that names it is committed
                copy_model(self.model_dir(source.name, serving.version), self.model_dir(name, 1))
                self.activate(name, 1, record=VersionRecord(dict(serving.model.metrics), None))
            except Exception:
                self._forget_collection(name)
                raise
        return state

    def _forget_collection(self, name: str) -> None:
        """Undo a create that failed after its row was committed."""
        self.states.pop(name, None)
        self.broken.pop(name, None)
        try:
            self.store.delete_collection(name)
        except Exception:
            log.exception("collection %s: cannot remove it after its creation failed", name)
        self._remove_dir(self._set_aside(name))

    def delete(self, name: str) -> None:
        state = self.get(name)
        # no write of this collection is half-way through, and no create of the name starts
        # before its directory is out of the way
        with self._create_lock, state.write_lock:
            self.store.delete_collection(name)
            self.states.pop(name, None)
            self.broken.pop(name, None)
            doomed = self._set_aside(name)
        self._remove_dir(doomed)

    def _set_aside(self, name: str) -> Path | None:
        """Rename a collection's directory out of its name's way (atomic); None if it has none."""
        directory = self.collection_dir(name)
        if not directory.exists():
            return None
        doomed = directory.with_name(f"{DELETED_PREFIX}{name}.{uuid.uuid4().hex[:8]}")
        os.replace(directory, doomed)
        return doomed

    @staticmethod
    def _remove_dir(directory: Path | None) -> None:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    # items ----------------------------------------------------------------------------------
    def upsert(self, name: str, items: Sequence[NewItem]) -> tuple[int, int | None, int]:
        """Validate everything, encode, commit, then update memory. Returns (count, version,
        the write's sequence number)."""
        state = self.get(name)
        # every item is checked, an overwritten duplicate too; then the last of an id wins
        fields = [f"{i.field}.{state.modality.name}" for i in items]
        checked = state.modality.decode_all([i.value for i in items], fields)
        kept = sorted({item.id: k for k, item in enumerate(items)}.values())
        batch = [items[k] for k in kept]
        decoded = [checked[k] for k in kept]
        fields = [fields[k] for k in kept]  # as the model sees the batch
        payloads = [state.modality.to_bytes(v) for v in decoded]
        while True:
            serving = state.serving
            codes = given_codes(name, batch, serving)
            todo = [k for k, code in enumerate(codes) if code is None]
            if serving is not None and todo:
                try:
                    packed = self.run_model(
                        serving.model.encode, state.modality.batch([decoded[k] for k in todo])
                    )
                except ValueError as exc:
                    raise model_rejected(exc, [fields[k] for k in todo], "items") from None
                for k, code in zip(todo, packed, strict=True):
                    codes[k] = bytes(code)
            try:
                with state.write_lock:
                    if self.states.get(name) is not state:
                        raise NotFound(f"collection {name!r} was deleted", "collection")
                    if state.serving is not serving:
                        continue  # a new model version landed while we encoded: encode again
                    writes = [
                        ItemWrite(i.id, p, i.metadata, c)
                        for i, p, c in zip(batch, payloads, codes, strict=True)
                    ]
                    version = serving.version if serving is not None else None
                    rows, seq = self.store.upsert_items(name, writes, version)
                    if serving is not None:  # add() replaces the code of a num already present
                        nums = np.asarray([num for num, _ in rows], dtype=np.int64)
                        flat = np.frombuffer(b"".join(c for c in codes if c), dtype=np.uint8)
                        serving.index.add(nums, flat.reshape(len(rows), -1))
                    state.remember_json(
                        [
                            (num, w.id, w.metadata_text.encode())
                            for (num, _), w in zip(rows, writes, strict=True)
                        ]
                    )
                    return len(batch), version, seq
            except VersionMoved:  # another server activated a version: follow it, encode again
                self.sync(force=True)
                if state.serving is serving:  # could not follow (see readyz): nothing written
                    raise Unavailable(
                        f"collection {name!r} serves a model version that is no longer active and"
                        f" the active one cannot be loaded ({self.broken.get(name)}); try again"
                    ) from None
            except CollectionGone:
                self.sync(force=True)
                raise NotFound(f"collection {name!r} was deleted", "collection") from None

    def delete_item(self, name: str, item_id: str) -> None:
        state = self.get(name)
        with state.write_lock:
            num = self.store.delete_item(name, item_id)
            if num is None:
                raise NotFound(f"collection {name!r} has no item {item_id!r}", "id")
            serving = state.serving
            if serving is not None:
                serving.index.remove(np.asarray([num], dtype=np.int64))
            state.forget([num])

    def get_item(self, name: str, item_id: str) -> tuple[CollectionState, ItemRow]:
        state = self.get(name)
        row = self.store.get_item(name, item_id)
        if row is None:
            raise NotFound(f"collection {name!r} has no item {item_id!r}", "id")
        return state, row

    # model versions -------------------------------------------------------------------------
    def activate(
        self,
        name: str,
        version: int,
        precomputed: Precomputed | None = None,
        record: VersionRecord | None = None,
    ) -> None:
        """Serve ``version``: load it, re-encode every stored item, swap in one assignment.
        ``record`` registers a new version in the same transaction that makes it active.
        Activations of one collection run one at a time, from loading to the swap.

        Heavy work runs without the collection's write lock: loading, encoding the items the
        worker did not, building the index and staging every code in SQLite in short
        transactions. Under the lock only the delta since then is applied (items written are
        encoded and stored, deleted ones leave the index) and the version is made active, so
        writers pause briefly and searches never do (they keep the old Serving until the
        assignment). A crash before that commit leaves staged codes that ``load`` re-encodes.
        """
        state = self.get(name)
        with state.activation_lock:  # two activations must not interleave their staged codes
            self._activate(state, version, precomputed, record)

    def _activate(
        self,
        state: CollectionState,
        version: int,
        precomputed: Precomputed | None,
        record: VersionRecord | None,
    ) -> None:
        name = state.name
        model = self._load_model(state, version)
        width = model.bits // 8
        pre = dict(precomputed.codes) if precomputed else {}
        codes = {n: c for n, c in pre.items() if len(c) == width}
        # a precomputed code of the wrong width is useless: then encode everything here
        after = precomputed.seq if precomputed and len(codes) == len(pre) else 0
        if after == 0:
            codes = {}
        seen = self.store.max_seq()
        codes.update(self._encode_rows(state, model, self.store.iter_items(name, after)))
        staged = sorted(codes.items())
        index = self._build_index(model.bits, staged)
        self.store.write_codes(name, version, staged)
        with state.write_lock:
            if self.states.get(name) is not state:
                raise NotFound(f"collection {name!r} was deleted", "collection")
            delta = self._encode_rows(state, model, self.store.iter_items(name, seen))
            live = state.items.nums()
            coded = np.fromiter([*codes, *delta], np.int64, len(codes) + len(delta))
            missing = set(np.setdiff1d(live, coded).tolist())
            if missing:  # not expected: every item is in the staged codes or the delta
                delta.update(self._encode_nums(state, model, missing))
            gone = np.setdiff1d(np.fromiter(codes, np.int64, len(codes)), live)
            if len(gone):  # deleted since they were staged
                index.remove(gone)
            if delta:
                nums = np.fromiter(delta, dtype=np.int64, count=len(delta))
                packed = np.frombuffer(b"".join(delta.values()), dtype=np.uint8)
                index.add(nums, packed.reshape(len(delta), width))
            # everything that can fail comes before the commit; after it only the assignment
            self.store.set_codes(
                name, version, sorted(delta.items()), active=version, record=record
            )
            state.serving = Serving(version, model, index)  # the swap: one assignment
            count = state.size
        self.broken.pop(name, None)
        log.info("collection %s now serves model v%d (%d items)", name, version, count)

    def install_model(self, name: str, model: Model, job_id: str | None = None) -> int:
        """Save an already trained model as the next version and serve it (demo, tests)."""
        version = self.next_version(name)
        model.save(self.model_dir(name, version))
        self.activate(name, version, record=VersionRecord(dict(model.metrics), job_id))
        return version


def _check_copied_spec(spec: dict[str, Any], source: CollectionState, bits: int) -> None:
    """A bits, dim or image_shape given with model_from must be the copied model's."""
    copied = {
        "bits": bits,
        "dim": source.spec.get("dim"),
        "image_shape": source.spec.get("image_shape"),
    }
    for key, model in copied.items():
        asked = spec.get(key)
        if asked is not None and asked != model:
            raise InvalidInput(
                f"{key} {asked} is not the {key} of model_from {source.name!r} ({model}); leave"
                " it out to take the model's",
                key,
            )
