"""Frozen dataclass configs to and from the plain JSON objects saved in model directories."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

Config = TypeVar("Config")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config's fields, tuples as lists (what JSON reads back)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(cls: type[Config], d: Any, source: str) -> Config:
    """``cls(**d)``, refusing a non-object or unknown keys with a message naming ``source``;
    the dataclass's own checks (``__post_init__``) validate the values."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a JSON object of settings, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{source}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**d)
