"""fsync helpers: a model directory must be on disk before anything that names it is committed.

A rename or a new file is only durable once its directory is fsynced too; without these, a power
loss right after a version is made active can leave that version's files empty or missing.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync one file or directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` and ``root`` itself, children first."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def make_dirs(directory: Path) -> None:
    """``mkdir -p`` whose new directories survive a crash: each one's parent is fsynced."""
    missing = []
    path = directory
    while not path.exists():
        missing.append(path)
        path = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    for path in reversed(missing):
        fsync_path(path.parent)
