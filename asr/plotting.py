"""Figures for people to look at (spectrograms, training curves, alignments): matplotlib without a
display, each figure written atomically. Imports only `files` of ours, like `audio` and `text`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from asr.files import atomic_path


def pyplot() -> Any:
    """`matplotlib.pyplot` on the headless Agg backend, imported on first use (only plots need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Lay out `fig`, write it to `path` atomically (no half-written image is ever seen) and close it."""
    fig.tight_layout()
    try:
        with atomic_path(path, keep_suffix=True) as tmp:  # matplotlib picks the format from the extension
            fig.savefig(tmp)
    finally:
        pyplot().close(fig)
    return Path(path)
