"""Shared fixtures: real speech synthesized with espeak-ng, written as 16 kHz WAV with a manifest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from asr.audio import load_audio, save_audio
from asr.data import Utterance, write_manifest

torch.set_num_threads(1)  # CI has 2 cores; one thread per test process keeps timings stable

SENTENCES = [
    ("the cat sat on the mat", "en-us"),
    ("she sells sea shells by the sea shore", "en"),
    ("a quick brown fox jumps over the lazy dog", "en-us+m3"),
    ("we will meet again tomorrow morning", "en-gb-x-rp"),
    ("open the door and turn on the light", "en-us+f2"),
    ("numbers like seven and twelve are easy", "en"),
]


def synthesize(text: str, path: Path, voice: str = "en-us", speed: int = 160) -> Path:
    """Speak `text` with espeak-ng and save it as 16 kHz mono WAV at `path`."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); the tests need real speech")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    save_audio(path, load_audio(raw))
    raw.unlink()
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    """A folder of espeak-ng utterances with `manifest.jsonl` (relative paths)."""
    root = tmp_path_factory.mktemp("speech")
    (root / "wav").mkdir()
    entries = []
    for i, (text, voice) in enumerate(SENTENCES):
        wav = synthesize(text, root / "wav" / f"utt{i:02d}.wav", voice)
        entries.append(Utterance(str(wav), len(load_audio(wav)) / 16000, text, extra={"voice": voice}))
    write_manifest(root / "manifest.jsonl", entries)
    return root


@pytest.fixture(scope="session")
def speech_wav(speech_dir) -> Path:
    """One real utterance: 'the cat sat on the mat'."""
    return speech_dir / "wav" / "utt00.wav"
