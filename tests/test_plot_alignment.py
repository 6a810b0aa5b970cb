"""tools/plot_alignment.py: the alignment plot of a real utterance by the tiny model, and its errors."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from asr.audio import load_audio, save_audio
from conftest import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def plot(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "plot_alignment.py"), *map(str, args), "num_threads=1"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_plots_what_the_model_hears(tiny_model, speech_wav, tmp_path):
    out = tmp_path / "utt.png"
    result = plot(speech_wav, f"model={tiny_model}", f"out={out}", "text=the cat sat on the mat")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{speech_wav}: the cat sat on the mat", f"plot: {out}"]
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 20_000
    assert [p.name for p in tmp_path.iterdir()] == ["utt.png"]  # no temporary file left behind


def test_errors_are_one_line(tiny_model, speech_wav, tmp_path):
    missing = plot(tmp_path / "nope.wav", f"model={tiny_model}")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("hello")
    corrupt = plot(not_audio, f"model={tiny_model}")
    long_wav = tmp_path / "long.wav"
    save_audio(long_wav, torch.cat([load_audio(speech_wav), torch.zeros(61 * 16000)]))
    too_long = plot(long_wav, f"model={tiny_model}")
    two = plot(speech_wav, speech_wav, f"model={tiny_model}")
    for result, status, words in ((missing, 1, "nope.wav"), (corrupt, 1, "notes.wav"), (too_long, 1, "long.wav: 6"),
                                  (two, 2, "one audio file")):
        assert result.returncode == status, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and words in result.stderr
    assert not list(tmp_path.glob("*.png"))
