"""python -m asr.transcribe FILE_OR_DIR_OR_MANIFEST... [overrides]: speech to text.

    python -m asr.transcribe meeting.wav                                   # transcript on stdout
    python -m asr.transcribe talks/ output.format=srt output.dir=subs/     # subtitles for a folder
    python -m asr.transcribe a.wav b.flac model=exp/small/best.pt decoder=beam output.format=json
    python -m asr.transcribe --info                                        # what the model is

From Python (`asr.load_model` is this module's `load_model`):

    import asr
    model = asr.load_model()                          # the bundled model; or load_model("exp/small/best.pt", decoder="beam")
    print(model.transcribe("meeting.wav").text)
    model.transcribe(samples, sample_rate=8000)       # a 1-D numpy array or tensor

Recordings are read in blocks and cut at pauses (librosa's energy-based split) into utterance-like
segments of at most `segment.max_seconds`, which are transcribed in batches and stitched, so memory
does not grow with the recording's length. A bad file is reported on stderr and skipped; the exit status is 1 if any failed.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import librosa
import numpy as np
import soundfile as sf
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from asr.audio import SAMPLE_RATE, AudioError, as_waveform, audio_duration, load_audio
from asr.bundle import Bundle, BundleError, load_bundle
from asr.config import UsageError, load_config, pick_device, run_main, split_args
from asr.data import ManifestError, read_manifest
from asr.decoding import DecoderError, Hypothesis, WordTiming, build_decoder, resolve_auto, resolve_bundled
from asr.files import write_text_atomic

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".wma", ".webm", ".mp4", ".aiff", ".aif"}
FORMATS = ("txt", "json", "jsonl", "srt", "vtt")
FRAME, HOP = 1024, 256  # samples per analysis frame and hop for pause detection (64 ms / 16 ms)


@dataclass
class Segment:
    """A piece of one input: its samples and where it starts in the recording."""

    source: int  # index of the input file
    start: float  # seconds from the start of the recording
    wave: torch.Tensor


@dataclass
class Transcript:
    """One input's transcript: its text, timed words and duration (and, while it is being made, what is pending).
    `path` is None for audio given as an array; `error` is set when the input could not be used."""

    path: Path | None
    words: list[WordTiming] = field(default_factory=list)
    texts: list[tuple[float, str]] = field(default_factory=list)  # (segment start, text)
    duration: float = 0.0
    pending: int = 0  # segments sent to the model and not yet decoded
    read_done: bool = False
    error: str | None = None

    @property
    def text(self) -> str:
        return " ".join(t for _, t in sorted(self.texts) if t)

    def to_json(self) -> dict:
        return {"audio_filepath": None if self.path is None else str(self.path), "duration": round(self.duration, 3), "text": self.text,
                "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
                           "confidence": round(w.confidence, 4)} for w in self.words]}


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given; folders → their audio files (recursively, sorted); *.jsonl manifests → their audio."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
        elif p.suffix == ".jsonl":
            files += [Path(e.audio_filepath) for e in read_manifest(p)]
        else:
            files.append(p)
    return files


def read_blocks(path: Path, block_seconds: float) -> Iterator[torch.Tensor]:
    """Mono 16 kHz blocks of a recording, read incrementally when soundfile can (else decoded whole)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        yield load_audio(path)  # ffmpeg-only formats: validated and decoded in one go
        return
    if info.frames == 0:
        load_audio(path)  # raises the standard "contains no audio samples" error
    block = max(1, int(block_seconds * info.samplerate))
    for data in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
        yield as_waveform(data.mean(axis=1), info.samplerate, what=str(path))


def speech_regions(wave: np.ndarray, seg: DictConfig) -> list[tuple[int, int]]:
    """Utterance-like regions of `wave`: voiced stretches (librosa.effects.split) merged across pauses
    shorter than `seg.min_pause_seconds`, padded by `seg.padding_seconds` of context (never past the
    middle of the pause to the next region), and cut at their quietest frame when longer than
    `seg.max_seconds`."""
    min_pause, pad = int(seg.min_pause_seconds * SAMPLE_RATE), int(seg.padding_seconds * SAMPLE_RATE)
    max_samples = int(seg.max_seconds * SAMPLE_RATE)
    merged: list[list[int]] = []
    for s, e in librosa.effects.split(wave, top_db=seg.top_db, frame_length=FRAME, hop_length=HOP):
        if merged and s - merged[-1][1] < min_pause:
            merged[-1][1] = int(e)
        else:
            merged.append([int(s), int(e)])
    regions = []
    for i, (s, e) in enumerate(merged):
        lo = max(s - pad, (merged[i - 1][1] + s) // 2 if i else 0)
        hi = min(e + pad, (e + merged[i + 1][0]) // 2 if i + 1 < len(merged) else len(wave))
        while hi - lo > max_samples:  # no pause long enough: cut where it is quietest in the second half
            rms = librosa.feature.rms(y=wave[lo + max_samples // 2 : lo + max_samples], frame_length=FRAME, hop_length=HOP)[0]
            cut = lo + max_samples // 2 + int(rms.argmin()) * HOP
            regions.append((lo, cut))
            lo = cut
        regions.append((lo, hi))
    return regions


def segments_of(audio: Path | torch.Tensor, source: int, cfg: DictConfig) -> Iterator[Segment]:
    """Segments of one recording of any length (a file, or a 16 kHz waveform in memory), taken block by
    block: the buffer never holds more than about 2 × segment.max_seconds + segment.block_seconds of audio.
    A recording no longer than segment.max_seconds is one segment."""
    seg = cfg.segment
    max_samples = int(seg.max_seconds * SAMPLE_RATE)
    if isinstance(audio, torch.Tensor):
        blocks: Iterable[torch.Tensor] = audio.split(max(1, int(seg.block_seconds * SAMPLE_RATE)))
    else:
        blocks = read_blocks(audio, seg.block_seconds)
    buffer, offset = torch.zeros(0), 0  # offset: samples of the recording before buffer[0]
    for block in blocks:
        buffer = torch.cat([buffer, block])
        if len(buffer) <= 2 * max_samples:
            continue
        horizon = len(buffer) - max_samples  # a region ending before this cannot grow any more
        regions = speech_regions(buffer.numpy(), seg)
        done = [r for r in regions if r[1] < horizon]
        for s, e in done:
            yield Segment(source, (offset + s) / SAMPLE_RATE, buffer[s:e])
        pending = [s for s, e in regions if e >= horizon]
        cut = done[-1][1] if done else min([horizon, *pending[:1]])
        buffer, offset = buffer[cut:], offset + cut
    if offset == 0 and len(buffer) <= max_samples:  # a short recording is used whole, as evaluate does
        yield Segment(source, 0.0, buffer)
        return
    for s, e in speech_regions(buffer.numpy(), seg):
        if e - s >= seg.min_seconds * SAMPLE_RATE:
            yield Segment(source, (offset + s) / SAMPLE_RATE, buffer[s:e])


def batches(segments: Iterator[Segment], batch_seconds: float, pool_seconds: float) -> Iterator[list[Segment]]:
    """Group segments so that a padded batch holds at most `batch_seconds` of audio. Segments are
    collected in pools of about `pool_seconds` of audio and sorted by length inside a pool, so short
    and long segments rarely share a batch (little padding) while memory stays bounded."""
    pool: list[Segment] = []
    pooled = 0
    for seg in segments:
        pool.append(seg)
        pooled += len(seg.wave)
        if pooled >= pool_seconds * SAMPLE_RATE:
            yield from _pack(pool, batch_seconds)
            pool, pooled = [], 0
    yield from _pack(pool, batch_seconds)


def _pack(pool: list[Segment], batch_seconds: float) -> Iterator[list[Segment]]:
    batch: list[Segment] = []
    for seg in sorted(pool, key=lambda s: len(s.wave)):  # ascending: the newest segment is the longest
        if batch and len(seg.wave) * (len(batch) + 1) > batch_seconds * SAMPLE_RATE:
            yield batch
            batch = []
        batch.append(seg)
    if batch:
        yield batch


def timestamp(seconds: float, sep: str) -> str:
    """HH:MM:SS,mmm (SRT, sep=',') or HH:MM:SS.mmm (WebVTT, sep='.')."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def subtitle_cues(words: list[WordTiming], max_chars: int, max_seconds: float, max_gap: float) -> list[tuple[float, float, str]]:
    """Group words into cues: a new cue when the line would grow too long, too slow, or after a pause."""
    cues: list[tuple[float, float, str]] = []
    current: list[WordTiming] = []
    for w in words:
        if current and (len(" ".join(x.word for x in current + [w])) > max_chars
                        or w.end - current[0].start > max_seconds or w.start - current[-1].end > max_gap):
            cues.append((current[0].start, current[-1].end, " ".join(x.word for x in current)))
            current = []
        current.append(w)
    if current:
        cues.append((current[0].start, current[-1].end, " ".join(x.word for x in current)))
    return cues


def render(t: Transcript, fmt: str, cfg: DictConfig) -> str:
    """A finished transcript in one output format."""
    if fmt == "txt":
        return t.text + "\n"
    if fmt in ("json", "jsonl"):
        return json.dumps(t.to_json(), indent=2 if fmt == "json" else None) + "\n"
    cues = subtitle_cues(t.words, cfg.output.max_line_chars, cfg.output.max_cue_seconds, cfg.output.max_gap_seconds)
    if fmt == "srt":
        return "".join(f"{i}\n{timestamp(s, ',')} --> {timestamp(e, ',')}\n{text}\n\n" for i, (s, e, text) in enumerate(cues, 1))
    return "WEBVTT\n\n" + "".join(f"{timestamp(s, '.')} --> {timestamp(e, '.')}\n{text}\n\n" for s, e, text in cues)


def write_output(t: Transcript, cfg: DictConfig, many: bool) -> None:
    """Print (txt/jsonl without output.dir) or write `<stem>.<format>` next to the audio or into output.dir."""
    fmt = cfg.output.format
    if fmt in ("txt", "jsonl") and not cfg.output.dir:
        sys.stdout.write(f"{t.path}\t{render(t, fmt, cfg)}" if fmt == "txt" and many else render(t, fmt, cfg))
        sys.stdout.flush()
        return
    folder = Path(cfg.output.dir) if cfg.output.dir else t.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with (folder / "transcripts.jsonl").open("a") as f:
            f.write(render(t, fmt, cfg))
        return
    write_text_atomic(folder / f"{t.path.stem}.{fmt}", render(t, fmt, cfg))


def lineage_summary(start: dict) -> str:
    """A fine-tuned model's starting bundles in one line, the latest first, back to the run trained from
    scratch: `path of DATE TIME (N steps, E epochs; trained on M) <- path of DATE TIME (...)` (the time tells apart
    successive models shipped at one path, such as `init_from=bundled` twice)."""
    parts = []
    while isinstance(start, dict):
        done = ", ".join(f"{start[k]} {name}" for k, name in (("steps", "steps"), ("epoch", "epochs")) if k in start)
        created = f" of {start['created'][:16].replace('T', ' ')}" if start.get("created") else ""
        new_head = f"; a new {start['new_tokenizer']} output layer on it" if start.get("new_tokenizer") else ""
        parts.append(f"{start.get('bundle')}{created} ({done}; trained on {start.get('train_manifest', '?')}{new_head})")
        start = start.get("init_from")
    return " <- ".join(parts)


def print_info(bundle: Bundle, decoder_cfg: DictConfig) -> None:
    """Describe a model bundle (where it came from, how it was trained) and the decoder it would run with."""
    params = sum(p.numel() for p in bundle.recognizer.model.parameters())
    print(f"model: {bundle.path}")
    print(f"parameters: {params / 1e6:.2f} M; tokenizer: {bundle.tokenizer.to_dict()['kind']} ({len(bundle.tokenizer)} units)")
    print(f"architecture: {json.dumps(bundle.config['model'])}")
    for key, value in bundle.provenance.items():
        if key == "init_from" and isinstance(value, dict):  # fine-tuned: where it started, in brief
            value = lineage_summary(value)
        print(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    decoder = f"decoder: {decoder_cfg.name}"
    if decoder_cfg.name == "beam":
        decoder += (f"; lm {resolve_bundled('lm', decoder_cfg.lm)}, lexicon {resolve_bundled('lexicon', decoder_cfg.lexicon)}, "
                    f"lm_weight {decoder_cfg.lm_weight:g}, word_score {decoder_cfg.word_score:g}")
    print(decoder)


def transcribe_inputs(inputs: Sequence[Path | torch.Tensor], bundle: Bundle, decoder, cfg: DictConfig, device: torch.device,
                      on_done: Callable[[Transcript], None] | None = None, report: bool = True) -> list[Transcript]:
    """Transcribe files and/or 16 kHz waveforms, their segments sharing batches. `on_done` gets each
    transcript that succeeded in input order, as soon as it and every input before it are finished; a
    file that cannot be read gets `error` (printed on stderr if `report`), and the others go on."""
    transcripts = [Transcript(None if isinstance(x, torch.Tensor) else Path(x)) for x in inputs]
    bar = tqdm(total=len(inputs), unit="file", disable=None if len(inputs) > 1 else True, file=sys.stderr)
    done = [False] * len(inputs)
    next_out = 0

    def finish(i: int) -> None:
        nonlocal next_out
        done[i] = True
        transcripts[i].words.sort(key=lambda w: w.start)
        bar.update(1)
        while next_out < len(transcripts) and done[next_out]:
            if transcripts[next_out].error is None and on_done is not None:
                on_done(transcripts[next_out])
            next_out += 1

    def all_segments() -> Iterator[Segment]:
        for i, (t, audio) in enumerate(zip(transcripts, inputs)):
            try:
                t.duration = len(audio) / SAMPLE_RATE if t.path is None else audio_duration(t.path)
                for seg in segments_of(audio if t.path is None else t.path, i, cfg):
                    t.pending += 1
                    yield seg
            except AudioError as err:
                t.error = str(err)
                if report:
                    print(f"error: {err}", file=sys.stderr)
            t.read_done = True
            if t.pending == 0:
                finish(i)

    for batch in batches(all_segments(), cfg.batch_seconds, cfg.pool_seconds):
        lengths = torch.tensor([len(s.wave) for s in batch])
        waves = torch.nn.utils.rnn.pad_sequence([s.wave for s in batch], batch_first=True).to(device)
        log_probs, out_lengths = bundle.log_probs(waves, lengths.to(device))
        hyps: list[Hypothesis] = decoder.decode(log_probs.cpu(), out_lengths.cpu())
        for seg, hyp in zip(batch, hyps):
            t = transcripts[seg.source]
            t.texts.append((seg.start, hyp.text))
            t.words += [WordTiming(w.word, w.start + seg.start, w.end + seg.start, w.confidence) for w in hyp.words]
            t.pending -= 1
            if t.pending == 0 and t.read_done:
                finish(seg.source)
    bar.close()
    return transcripts


class Transcriber:
    """A loaded model bundle with its decoder and `conf/transcribe.yaml`'s settings: speech to text from Python.
    Made by `load_model`; it does what `python -m asr.transcribe` does (segmenting at pauses, batching)."""

    def __init__(self, bundle: Bundle, decoder, cfg: DictConfig, device: torch.device) -> None:
        self.bundle, self.decoder, self.cfg, self.device = bundle, decoder, cfg, device

    def transcribe(self, audio: str | os.PathLike | np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> Transcript:
        """One recording: a path, or a 1-D waveform (float in [-1, 1] or int16/int32 PCM) at `sample_rate` Hz.
        Returns its Transcript (`.text`, `.words` with start/end/confidence, `.duration`); raises AudioError."""
        if isinstance(audio, (str, os.PathLike)):
            [t] = transcribe_inputs([Path(audio)], self.bundle, self.decoder, self.cfg, self.device, report=False)
        else:
            [t] = transcribe_inputs([as_waveform(audio, sample_rate)], self.bundle, self.decoder, self.cfg, self.device)
        if t.error:
            raise AudioError(t.error)
        return t

    def transcribe_files(self, paths: Iterable[str | os.PathLike]) -> list[Transcript]:
        """Many files at once, their segments sharing batches; one Transcript per path, in order. A file that
        cannot be used gets `.error` (also printed on stderr) instead of stopping the others."""
        return transcribe_inputs([Path(p) for p in paths], self.bundle, self.decoder, self.cfg, self.device)


def load_model(model: str | os.PathLike | None = None, *, decoder: str | None = None, device: str | None = None,
               overrides: Sequence[str] = ()) -> Transcriber:
    """A Transcriber for a model bundle (None: the bundled model) with `decoder` (auto | greedy | beam; None: the
    config's, auto), `device` (auto | cpu | cuda) and any other `conf/transcribe.yaml` overrides as on the command
    line, e.g. `overrides=["decoder.beam_size=50", "segment.max_seconds=15"]`. Raises UsageError (a bad
    override), BundleError or DecoderError."""
    named = [f"decoder={decoder}"] * (decoder is not None) + [f"device={device}"] * (device is not None)
    cfg = load_config("transcribe", [*named, *overrides], plain_keys=("model",))
    if model is not None:
        cfg.model = str(model)
    return _transcriber(cfg)


def _transcriber(cfg: DictConfig) -> Transcriber:
    """Load what a transcribe config names: the bundle on its device, and its decoder."""
    cfg.decoder = resolve_auto(cfg.decoder, bundled_model=cfg.model is None)
    if cfg.output.format not in FORMATS:
        raise UsageError(f"output.format must be one of {', '.join(FORMATS)}, got {cfg.output.format!r}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    bundle = load_bundle(cfg.model, device)
    return Transcriber(bundle, build_decoder(cfg.decoder, bundle.tokenizer, bundle.recognizer.frame_seconds), cfg, device)


def main(argv: list[str]) -> int:
    """Entry point of `python -m asr.transcribe`."""
    info = "--info" in argv
    paths, overrides = split_args([a for a in argv if a != "--info"])
    cfg = load_config("transcribe", overrides, plain_keys=("model",))
    model = _transcriber(cfg)
    if info:
        print_info(model.bundle, cfg.decoder)
        return 0
    if not paths:
        raise UsageError("no input: python -m asr.transcribe FILE_OR_DIR_OR_MANIFEST... [key=value ...]")
    files = expand_inputs(paths)
    if not files:
        raise UsageError(f"no audio files found in {' '.join(paths)}")
    many = len(files) > 1
    transcripts = transcribe_inputs(files, model.bundle, model.decoder, cfg, device=model.device,
                                    on_done=lambda t: write_output(t, cfg, many))
    failed = [t for t in transcripts if t.error]
    if failed and len(transcripts) > 1:
        print(f"{len(failed)} of {len(transcripts)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main, errors=(BundleError, DecoderError, ManifestError, AudioError))
