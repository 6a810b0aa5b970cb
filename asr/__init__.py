"""asr: a readable speech recognition toolkit (log-mel → BiLSTM → CTC → decoder).

    import asr
    model = asr.load_model()                  # the bundled English model (asr.transcribe.load_model)
    print(model.transcribe("meeting.wav").text)
"""

from pathlib import Path

__version__ = "0.1.0"

ASSETS_DIR = Path(__file__).resolve().parent / "assets"  # the bundled model, language model and lexicon
_FROM_TRANSCRIBE = ("load_model", "Transcriber", "Transcript")  # loaded on first use: `import asr.audio` stays light


def __getattr__(name: str):
    """`asr.load_model`, `asr.Transcriber` and `asr.Transcript`, imported from asr.transcribe when first asked for."""
    if name in _FROM_TRANSCRIBE:
        from asr import transcribe

        return getattr(transcribe, name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
