import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, audio_duration, load_audio, save_audio


def test_reads_speech_as_mono_16k(speech_wav):
    wav = load_audio(speech_wav)
    assert wav.dtype == torch.float32 and wav.ndim == 1
    assert 0.8 < len(wav) / 16000 < 3.0
    assert wav.abs().max() > 0.05  # it is speech, not silence


@pytest.mark.parametrize("fmt,sr", [("flac", 44100), ("ogg", 22050), ("wav", 8000)])
def test_any_rate_channels_and_format(speech_wav, tmp_path, fmt, sr):
    import torchaudio.functional as AF

    ref = load_audio(speech_wav)
    resampled = AF.resample(ref, 16000, sr).numpy()
    stereo = np.stack([resampled, 0.5 * resampled], axis=1)
    path = tmp_path / f"x.{fmt}"
    sf.write(path, stereo, sr)
    wav = load_audio(path)
    assert abs(len(wav) - len(ref)) <= 2
    # mono mix of (x, x/2) is 0.75 x; compare energy-normalized correlation
    corr = torch.dot(wav[: len(ref)], ref[: len(wav)]) / (wav.norm() * ref.norm())
    assert corr > 0.95


def test_mp3(speech_wav, tmp_path):
    path = tmp_path / "x.mp3"
    sf.write(path, load_audio(speech_wav).numpy(), 16000, format="MP3")
    assert abs(len(load_audio(path)) - len(load_audio(speech_wav))) < 3000  # mp3 pads frames


def test_slice_with_offset_and_duration(speech_wav):
    full = load_audio(speech_wav)
    part = load_audio(speech_wav, offset=0.25, duration=0.5)
    assert len(part) == 8000
    assert torch.allclose(part, full[4000:12000], atol=1e-6)


def test_save_and_duration(tmp_path):
    t = torch.linspace(0, 1, 16000)
    save_audio(tmp_path / "tone.flac", 0.3 * torch.sin(2 * math.pi * 440 * t))
    assert audio_duration(tmp_path / "tone.flac") == pytest.approx(1.0)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_fallback_for_other_formats(speech_wav, tmp_path):
    path = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(speech_wav), "-c:a", "aac", str(path)], check=True)
    wav = load_audio(path)
    assert abs(len(wav) / 16000 - audio_duration(speech_wav)) < 0.1


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make,problem",
    [
        (lambda p: p / "missing.wav", "no such file"),
        (lambda p: _write(p / "empty.wav", b""), "empty file"),
        (lambda p: _write(p / "text.wav", b"this is not audio at all\n" * 20), "not a readable audio file"),
        (lambda p: p, "is a directory"),
    ],
)
def test_bad_files_name_file_and_problem(tmp_path, make, problem, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # without ffmpeg: soundfile's verdict
    path = make(tmp_path)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_not_audio_with_ffmpeg_is_still_clear(tmp_path):
    path = _write(tmp_path / "text.mp3", b"this is not audio at all\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(path)


def test_zero_length_and_nan(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros((0,), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="zero.wav: contains no audio samples"):
        load_audio(tmp_path / "zero.wav")
    data = np.zeros(1600, dtype=np.float32)
    data[100] = np.nan
    sf.write(tmp_path / "nan.wav", data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: contains NaN or infinite samples"):
        load_audio(tmp_path / "nan.wav")


def test_offset_past_end(speech_wav):
    with pytest.raises(AudioError, match="past the end"):
        load_audio(speech_wav, offset=100.0)
