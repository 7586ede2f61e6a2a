"""Service settings, read from the environment with the prefix ``BITSEEK_``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


@dataclass(frozen=True)
class InputLimits:
    """How large one item may be; checked when a payload is decoded, before anything is stored."""

    max_text_chars: int = 100_000
    max_image_pixels: int = 4096 * 4096


class Settings(BaseSettings):
    """Everything the service can be told; one field per knob, each with its default."""

    model_config = SettingsConfigDict(env_prefix="BITSEEK_", env_ignore_empty=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port uvicorn listens on.")
    data_dir: Path = Field(Path("data"), description="SQLite database, model versions, jobs.")
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda or cuda:N.")
    admin_token: str | None = Field(None, description="Bearer token; admin routes off if unset.")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", description="uvicorn / logging level."
    )

    # Limits: every one is enforced before anything is stored.
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="Larger bodies get 413.")
    max_batch_items: int = Field(1000, gt=0, description="Items per upsert/encode/denoise request.")
    max_text_chars: int = Field(
        InputLimits.max_text_chars, gt=0, description="Characters per text item."
    )
    max_image_pixels: int = Field(
        InputLimits.max_image_pixels, gt=0, description="Pixels per decoded image."
    )
    max_k: int = Field(1000, gt=0, description="Largest k a search may ask for.")
    default_k: int = Field(10, gt=0, description="k used when a search gives neither k nor radius.")

    # Micro-batching of query encoding: bounded size and bounded wait.
    batch_max_size: int = Field(64, gt=0, description="Most items encoded in one model call.")
    batch_max_wait_ms: float = Field(2.0, ge=0, description="Longest a query waits for company.")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's.")

    # Servers sharing the data directory (uvicorn workers, replicas): how often each one looks
    # for what the others wrote. Bounds how late a write shows on another server.
    sync_interval_ms: float = Field(
        20.0, gt=0, description="How often to apply other servers' writes (milliseconds)."
    )
    workers: int = Field(1, ge=1, description="Server processes `bitseek serve` starts.")

    # Start-up from saved indexes (service/snapshot.py): each collection's index is saved once
    # no write has come for this long, and at shutdown; 0 turns saving and loading off.
    snapshot_settle_s: float = Field(
        30.0, ge=0, description="Quiet seconds before the indexes are saved (0: never)."
    )

    # SQLite durability: FULL fsyncs the WAL at every commit (survives power loss as well as a
    # killed process); NORMAL survives a killed process but may lose the last commits on power loss.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field("FULL", description="PRAGMA synchronous.")

    # Where items and codes live (service/storage.py). local: SQLite in data_dir and an
    # in-process index. milvus: a Milvus server or cluster at milvus_uri, or Milvus Lite when the
    # URI is a file path (one process only); payload files and model versions stay in data_dir.
    backend: Literal["local", "milvus"] = Field("local", description="local or milvus.")
    milvus_uri: str | None = Field(
        None, description="http(s)://host:19530, or a *.db path (Milvus Lite); default data_dir."
    )
    milvus_token: str | None = Field(None, description="Milvus token (user:password or API key).")
    milvus_timeout_s: float = Field(30.0, gt=0, description="Timeout of every Milvus call.")

    @property
    def milvus_uri_or_default(self) -> str:
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def input_limits(self) -> InputLimits:
        return InputLimits(self.max_text_chars, self.max_image_pixels)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings.model_validate({})  # values come from the environment
