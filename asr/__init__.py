"""asr: a readable speech recognition toolkit (log-mel → BiLSTM → CTC → decoder)."""

from pathlib import Path

__version__ = "0.1.0"

ASSETS_DIR = Path(__file__).resolve().parent / "assets"  # the bundled model, language model and lexicon
