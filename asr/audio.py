"""Audio input/output: read any soundfile-readable file (or ffmpeg-decodable one), mix to mono, resample.

Everything downstream sees a 1-D float32 tensor at the model's sample rate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.files import atomic_path

SAMPLE_RATE = 16000  # Hz; the rate every model in this toolkit works at


class AudioError(Exception):
    """A file that cannot be used as audio. The message names the file and the problem."""


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _read_soundfile(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    info = sf.info(str(path))
    start = int(round(offset * info.samplerate))
    if info.frames > 0 and start >= info.frames:
        raise AudioError(f"{path}: offset {offset:.3f}s is past the end of the audio ({info.duration:.3f}s)")
    frames = -1 if duration is None else int(round(duration * info.samplerate))
    data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    return data, sr


def _read_ffmpeg(path: Path, offset: float, duration: float | None, sample_rate: int) -> tuple[np.ndarray, int]:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{offset:.6f}", "-i", str(path)]
    if duration is not None:
        cmd += ["-t", f"{duration:.6f}"]
    cmd += ["-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: not a readable audio file ({reason[-1] if reason else 'ffmpeg failed'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).reshape(-1, 1), sample_rate


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Read `path` (optionally the slice [offset, offset+duration) seconds) as mono float32 at `sample_rate`.

    Raises AudioError for a missing, empty, unreadable, zero-length or non-finite file.
    """
    path = Path(path)
    _check_file(path)
    try:
        data, sr = _read_soundfile(path, offset, duration)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        if shutil.which("ffmpeg") is None:
            raise AudioError(f"{path}: not a readable audio file ({err}); install ffmpeg for other formats") from None
        data, sr = _read_ffmpeg(path, offset, duration, sample_rate)
    return as_waveform(data.mean(axis=1), sr, what=str(path), target_rate=sample_rate)


def as_waveform(audio: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE, what: str = "audio array",
                target_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A 1-D waveform (float in [-1, 1], or int16/int32 PCM) at `sample_rate` Hz as mono float32 at `target_rate`.
    Raises AudioError, naming `what` (an array, or the file it was read from), for the wrong shape or type, no
    samples, NaN/inf."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if not isinstance(audio, np.ndarray):
        raise AudioError(f"{what}: expected a numpy array or torch tensor of samples, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise AudioError(f"{what}: expected a 1-D mono waveform, got shape {tuple(audio.shape)} (mix the channels first)")
    if audio.dtype.kind == "i" and audio.dtype.itemsize in (2, 4):
        audio = audio / float(2 ** (8 * audio.dtype.itemsize - 1))  # PCM integers to [-1, 1)
    elif audio.dtype.kind != "f":
        raise AudioError(f"{what}: samples must be float, int16 or int32, got {audio.dtype}")
    if audio.size == 0:
        raise AudioError(f"{what}: contains no audio samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{what}: contains NaN or infinite samples")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise AudioError(f"{what}: sample_rate must be a positive integer, got {sample_rate!r}")
    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if sample_rate != target_rate:
        wav = AF.resample(wav, int(sample_rate), target_rate)
    return wav


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, read from its header when soundfile can (no decode)."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError):
        return len(load_audio(path)) / SAMPLE_RATE


def save_audio(path: str | os.PathLike, wav: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform as 16-bit PCM (format from the extension), atomically."""
    data = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    with atomic_path(path, keep_suffix=True) as tmp:  # soundfile picks the format from the extension
        sf.write(str(tmp), data.astype(np.float32), sample_rate, subtype="PCM_16")

