"""File-system helpers shared by every stage: atomic writes. Imports nothing of ours (the bottom floor)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` when the block succeeds, delete it when not.

    A reader sees the old file or the complete new one, never half of one, and a failed write leaves the old file
    as it was. The parent folder is created. `keep_suffix=True` keeps the extension last in the temporary name,
    for writers that choose the format from it (soundfile, matplotlib).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}" if keep_suffix else f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
