"""Data: JSON Lines manifests, a lazily-reading dataset, duration-bucketed batches, and collation.

Manifest line (NeMo-compatible):
    {"audio_filepath": "wav/0001.wav", "duration": 3.42, "text": "the cat sat"}
with optional "offset", "speaker", "voice" (and any other keys, which are kept). A relative
`audio_filepath` is relative to the manifest's folder.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
import torchaudio.functional as AF
from torch.utils.data import Dataset, Sampler

from asr.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio
from asr.config import fail
from asr.files import atomic_path
from asr.text import Tokenizer, letters_not_spelled, normalize_text


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file (and line) and the problem."""


@dataclass
class Utterance:
    """One manifest entry, with `audio_filepath` resolved to an absolute path."""

    audio_filepath: str
    duration: float
    text: str
    offset: float = 0.0
    extra: dict = field(default_factory=dict)  # speaker, voice, augmentation, … kept as written

    def to_json(self, relative_to: Path | None = None) -> dict:
        """Manifest line for this entry; the path is made relative to `relative_to` when it lies below it."""
        path = Path(self.audio_filepath)
        if relative_to is not None:
            try:
                path = path.relative_to(relative_to.resolve())
            except ValueError:
                pass
        line = {"audio_filepath": str(path), "duration": round(self.duration, 4), "text": self.text}
        if self.offset:
            line["offset"] = self.offset
        line.update(self.extra)
        return line


def _parse_line(raw: str, base: Path, where: str) -> Utterance:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key, kind in (("audio_filepath", str), ("duration", (int, float)), ("text", str)):
        if key not in obj:
            raise ManifestError(f"{where}: missing required key {key!r}")
        if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            raise ManifestError(f"{where}: {key!r} has the wrong type ({type(obj[key]).__name__})")
    duration, offset = float(obj.pop("duration")), obj.pop("offset", 0.0)
    if not math.isfinite(duration) or duration <= 0:
        raise ManifestError(f"{where}: 'duration' must be a positive number, got {duration}")
    if not isinstance(offset, (int, float)) or not math.isfinite(offset) or offset < 0:
        raise ManifestError(f"{where}: 'offset' must be a non-negative number, got {offset!r}")
    path = Path(obj.pop("audio_filepath"))
    if not path.is_absolute():
        path = base / path
    return Utterance(str(path), duration, obj.pop("text"), float(offset), obj)


def read_manifest(path: str | os.PathLike, check_files: bool = False) -> list[Utterance]:
    """Read and validate a manifest; raises ManifestError naming the file and line of the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    base = path.resolve().parent
    entries = []
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            entry = _parse_line(raw, base, f"{path}:{lineno}")
            if check_files and not Path(entry.audio_filepath).is_file():
                raise ManifestError(f"{path}:{lineno}: audio file {entry.audio_filepath} does not exist")
            entries.append(entry)
    if not entries:
        raise ManifestError(f"{path}: manifest is empty")
    return entries


def normalize_transcript(transcript: str, where: str | os.PathLike) -> str:
    """`transcript` in spoken form (`normalize_text`); raises ManifestError naming `where` when it normalizes to
    nothing or has letters outside a-z that normalization would drop (the target would not be what is spoken)."""
    foreign = letters_not_spelled(transcript)
    if foreign:
        raise ManifestError(f"{where}: transcript has letters outside a-z ({' '.join(foreign)}), which normalization "
                            "would drop")
    text = normalize_text(transcript)
    if not text:
        raise ManifestError(f"{where}: empty transcript" + (" after normalization" if transcript.strip() else ""))
    return text


def measure_utterance(audio: Path, transcript: str, extra: dict | None = None) -> Utterance:
    """A new manifest entry: `transcript` normalized, the duration read from `audio` (its absolute path is kept).

    Raises ManifestError when the transcript cannot be used (`normalize_transcript`), AudioError when the audio is
    unreadable or has no samples; the messages name the audio file.
    """
    text = normalize_transcript(transcript, audio)
    duration = audio_duration(audio)
    if duration <= 0:
        raise AudioError(f"{audio}: contains no audio samples")
    return Utterance(str(Path(audio).resolve()), duration, text, extra=dict(extra or {}))


def write_manifest(path: str | os.PathLike, entries: Iterable[Utterance]) -> None:
    """Write entries atomically; audio paths below the manifest's folder are stored relative to it."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry.to_json(path.parent)) + "\n")


def write_tool_manifest(path: str | os.PathLike, entries: list[Utterance], skipped: list[str], source: str | os.PathLike,
                        max_shown: int = 50) -> None:
    """The end of a tool that makes a manifest: list what was skipped on stderr (at most `max_shown` lines), stop
    with a one-line error naming `source` when nothing is left, else write `path` and say what it holds."""
    for line in skipped[:max_shown]:
        print(f"skipped {line}", file=sys.stderr)
    if len(skipped) > max_shown:
        print(f"... and {len(skipped) - max_shown} more skipped", file=sys.stderr)
    if not entries:
        fail(f"{source}: no usable utterances ({len(skipped)} skipped), nothing written")
    write_manifest(path, entries)
    hours = sum(e.duration for e in entries) / 3600
    print(f"wrote {path}: {len(entries)} utterances, {hours:.3f} h; skipped {len(skipped)}")


def ctc_min_frames(ids: list[int]) -> int:
    """Fewest CTC output frames that can emit `ids`: one per token plus a blank between repeats."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


@dataclass
class FilterReport:
    """What `filter_utterances` kept and dropped, by reason."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        return f"kept {self.kept} utterances; dropped: {reasons}"


def filter_utterances(
    entries: list[Utterance],
    tokenizer: Tokenizer,
    output_frame_rate: float,
    min_duration: float = 0.0,
    max_duration: float = math.inf,
    speed_factors: Sequence[float] = (1.0,),
) -> tuple[list[Utterance], FilterReport]:
    """Drop utterances that are too short/long, have no usable transcript, or whose transcript
    needs more CTC frames than the model will produce (`output_frame_rate` frames per second).

    With speed perturbation the fastest factor leaves the fewest frames, so a transcript must fit in those.
    """
    frames_per_second = output_frame_rate / max(speed_factors)
    kept, report = [], FilterReport()
    for entry in entries:
        if entry.duration < min_duration:
            report.dropped["shorter than min_duration"] += 1
        elif entry.duration > max_duration:
            report.dropped["longer than max_duration"] += 1
        elif not entry.text.strip():
            report.dropped["empty transcript"] += 1
        else:
            try:
                ids = tokenizer.encode(entry.text)
            except ValueError:
                report.dropped["characters outside the alphabet"] += 1
                continue
            if ctc_min_frames(ids) > int(entry.duration * frames_per_second):
                report.dropped["transcript too long for its frames"] += 1
            else:
                kept.append(entry)
    report.kept = len(kept)
    return kept, report


class SpeechDataset(Dataset):
    """Utterances read lazily: item i is (waveform at `sample_rate`, target ids, i).

    An item may also be asked for as `(i, speed)`: the waveform is then speed-perturbed (resampled,
    so tempo, pitch and formants all move by `speed`), as `BucketBatchSampler` with speed factors asks.
    With `tokenizer=None` (evaluation) the targets are empty and transcripts are not encoded.
    """

    def __init__(self, entries: list[Utterance], tokenizer: Tokenizer | None, sample_rate: int = SAMPLE_RATE) -> None:
        self.entries = entries
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: int | tuple[int, float]) -> tuple[torch.Tensor, torch.Tensor, int]:
        i, speed = item if isinstance(item, tuple) else (item, 1.0)
        e = self.entries[i]
        wave = load_audio(e.audio_filepath, self.sample_rate, e.offset, e.duration if e.offset else None)
        if speed != 1.0:
            wave = AF.speed(wave, self.sample_rate, speed)[0]
        ids = self.tokenizer.encode(e.text) if self.tokenizer is not None else []
        return wave, torch.tensor(ids, dtype=torch.long), i

    @property
    def durations(self) -> list[float]:
        """Manifest durations, in dataset order."""
        return [e.duration for e in self.entries]


def collate(batch: list[tuple[torch.Tensor, torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """Pad a list of dataset items into a batch with lengths."""
    waves, targets, indices = zip(*batch)
    return {
        "waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
        "wave_lengths": torch.tensor([len(w) for w in waves], dtype=torch.long),
        "targets": torch.nn.utils.rnn.pad_sequence(targets, batch_first=True),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
        "indices": torch.tensor(indices, dtype=torch.long),
    }


class BucketBatchSampler(Sampler[list]):
    """Batches of utterances of similar duration, each holding at most `max_batch_seconds` of padded audio.

    The order is a pure function of (seed, epoch): durations are split into `num_buckets` quantile
    buckets, utterances are shuffled inside buckets, packed greedily into batches, and the batches are
    shuffled. With `world_size` > 1 every rank builds the same list and takes every world_size-th batch
    (the list is padded by repeating batches so all ranks take the same number of steps).

    Speed perturbation (Ko et al. 2015, on the fly): with `speed_factors` other than (1.0,), every
    utterance draws one factor per epoch (also a pure function of seed and epoch, so resume stays
    exact), is packed by its perturbed duration, and is yielded as `(index, factor)` for `SpeechDataset`.
    """

    def __init__(
        self,
        durations: list[float],
        max_batch_seconds: float,
        num_buckets: int = 30,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        speed_factors: Sequence[float] = (1.0,),
    ) -> None:
        if max_batch_seconds <= 0:
            raise ValueError("max_batch_seconds must be positive")
        if not speed_factors or min(speed_factors) <= 0:
            raise ValueError(f"speed factors must be positive numbers, got {list(speed_factors)}")
        self.durations = list(durations)
        self.speed_factors = tuple(float(f) for f in speed_factors)
        self.max_batch_seconds = max_batch_seconds
        self.num_buckets = max(1, num_buckets)
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0
        self._cache: tuple[int, list[list]] | None = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; `start_batch` skips batches already consumed (exact resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _all_batches(self) -> list[list]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._build_batches())
        return self._cache[1]

    def _build_batches(self) -> list[list]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        perturb = self.speed_factors != (1.0,)
        durations = self.durations
        if perturb:  # its own generator: without perturbation the batches are what they always were
            speed_rng = random.Random(f"speed {self.seed} {self.epoch}")
            factors = [speed_rng.choice(self.speed_factors) for _ in durations]
            durations = [d / f for d, f in zip(durations, factors)]
        order = sorted(range(len(durations)), key=lambda i: durations[i])
        size = math.ceil(len(order) / self.num_buckets)
        buckets = [order[i : i + size] for i in range(0, len(order), size)]
        batches: list[list] = []
        for bucket in buckets:
            if self.shuffle:
                rng.shuffle(bucket)
            batch: list = []
            longest = 0.0
            for i in bucket:
                d = durations[i]
                if batch and max(longest, d) * (len(batch) + 1) > self.max_batch_seconds:
                    batches.append(batch)
                    batch, longest = [], 0.0
                batch.append((i, factors[i]) if perturb else i)
                longest = max(longest, d)
            if batch:
                batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        if self.world_size > 1:
            batches += batches[: (-len(batches)) % self.world_size]
            batches = batches[self.rank :: self.world_size]
        return batches

    def __iter__(self) -> Iterator[list]:
        yield from self._all_batches()[self.start_batch :]

    def __len__(self) -> int:
        return len(self._all_batches()) - self.start_batch
