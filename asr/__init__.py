"""asr: a readable speech recognition toolkit (log-mel → BiLSTM → CTC → decoder)."""

__version__ = "0.1.0"
