"""Figures for people to look at (spectrograms, training curves, alignments): matplotlib without a
display, each figure written atomically. Imports nothing of ours, like `audio` and `text`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """`matplotlib.pyplot` on the headless Agg backend, imported on first use (only plots need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Lay out `fig`, write it to `path` atomically (no half-written image is ever seen) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # same suffix: matplotlib picks the format from it
    fig.savefig(tmp)
    pyplot().close(fig)
    os.replace(tmp, path)
    return path
