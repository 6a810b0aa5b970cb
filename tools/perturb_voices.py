#!/usr/bin/env python3
"""Speaker augmentation: new voices from a manifest's recordings, by WORLD vocoder resynthesis.

    python tools/perturb_voices.py data/synthetic/train.jsonl -o data/synthetic/train_vc \\
        [--fraction 0.4] [--seed 0] [--jobs 2] [--f0-range 0.7 1.8] [--formant-range 0.9 1.2] \\
        [--exclude EARLIER_SET/manifest.jsonl ...]

A corpus with few speakers teaches a model those speakers. For a random `--fraction` of the entries this
analyses each recording with the WORLD vocoder (pyworld: F0, spectral envelope, aperiodicity), scales
the F0 contour by a factor drawn log-uniformly from `--f0-range` (intonation is kept, only its level
moves) and moves the spectral envelope's frequency axis by a factor drawn uniformly from
`--formant-range` (formants move with it: a shorter or longer vocal tract), then resynthesizes. Each
copy is a different virtual speaker; tempo and words are unchanged. Unlike resampling or engine pitch
settings, F0 and formants move independently.

Writes OUT/wav/<n>-<name>-f<F0 factor>-v<formant factor>.wav and OUT/manifest.jsonl (paths relative
to OUT), each entry the source's with `voice` "<voice>+vc", `vc_source`, `vc_f0` and `vc_formant`
added. Train on both:
`data.train_manifest=[data/synthetic/train.jsonl,data/synthetic/train_vc/manifest.jsonl]`.
Draws are seeded per entry, and recordings already written are kept, so a stopped run picks up
where it was and gives the same files. `--exclude` takes earlier sets' manifests and drops the entries
they copied (their `vc_source`) before the draw, so a further set copies only recordings no set has; the
draw is then over the remaining entries, as if they had been written to a manifest of their own
(`-o data/synthetic/train_vc2 --exclude data/synthetic/train_vc/manifest.jsonl`).
Needs `pip install pyworld` (the `augment` extra).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

from asr.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio, save_audio  # noqa: E402
from asr.config import fail  # noqa: E402
from asr.data import ManifestError, Utterance, read_manifest, write_tool_manifest  # noqa: E402

F0_RANGE = (0.7, 1.8)       # F0 factor, drawn log-uniformly: 105 Hz male voices reach 74-189 Hz
FORMANT_RANGE = (0.9, 1.2)  # spectral-envelope frequency factor, uniform (adult female formants are ~15-20 % above male)
FRAME_MS = 5.0              # WORLD analysis frame period
MAX_SKIPPED_SHOWN = 20


def draw_factors(seed: int, index: int, f0_range: tuple[float, float], formant_range: tuple[float, float]) -> tuple[float, float]:
    """(F0 factor, formant factor) for entry `index`: the same for the same seed, whatever else is drawn."""
    rng = random.Random(f"{seed}:{index}")
    f0 = math.exp(rng.uniform(math.log(f0_range[0]), math.log(f0_range[1])))
    return round(f0, 3), round(rng.uniform(*formant_range), 3)


def warp_frequency(spectrum: np.ndarray, factor: float) -> np.ndarray:
    """Move a (frames, bins) spectrum's frequency axis by `factor`: what was at bin k lands at bin k*factor.
    Interpolates log magnitudes; bins beyond the source's last one repeat it."""
    bins = spectrum.shape[1]
    source = np.minimum(np.arange(bins) / factor, bins - 1)
    left = np.floor(source).astype(int)
    right = np.minimum(left + 1, bins - 1)
    frac = (source - left)[None, :]
    log_spec = np.log(np.maximum(spectrum, 1e-16))
    return np.ascontiguousarray(np.exp(log_spec[:, left] * (1 - frac) + log_spec[:, right] * frac))


def perturb_voice(wave: np.ndarray, f0_factor: float, formant_factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """WORLD resynthesis of a mono waveform with F0 scaled by `f0_factor` and the envelope warped by `formant_factor`."""
    import pyworld

    x = np.ascontiguousarray(wave, dtype=np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    if formant_factor != 1.0:
        envelope = warp_frequency(envelope, formant_factor)
        aperiodicity = np.clip(warp_frequency(aperiodicity, formant_factor), 0.0, 1.0)
    y = pyworld.synthesize(f0 * f0_factor, envelope, aperiodicity, sample_rate, frame_period=FRAME_MS)[: len(x)]
    if not np.isfinite(y).all():
        raise ValueError("WORLD resynthesis gave non-finite samples")
    peak = float(np.abs(y).max()) if y.size else 0.0
    return (y / peak * 0.99 if peak > 0.99 else y).astype(np.float32)


def perturb_entry(job: tuple[Utterance, Path, float, float]) -> Utterance | str:
    """Make one perturbed copy (kept if already written); the new entry, or a one-line reason it was skipped."""
    entry, out, f0_factor, formant_factor = job
    try:
        if not out.is_file():
            wave = load_audio(entry.audio_filepath, offset=entry.offset, duration=entry.duration if entry.offset else None)
            save_audio(out, perturb_voice(wave.numpy(), f0_factor, formant_factor))
        duration = audio_duration(out)
    except (AudioError, ValueError) as err:
        return str(err) if str(err).startswith(entry.audio_filepath) else f"{entry.audio_filepath}: {err}"
    extra = {**entry.extra, "voice": f"{entry.extra.get('voice', 'unknown')}+vc", "vc_source": entry.audio_filepath,
             "vc_f0": f0_factor, "vc_formant": formant_factor}
    return Utterance(str(out.resolve()), duration, entry.text, extra=extra)


def plan(entries: list[Utterance], out_dir: Path, fraction: float, seed: int,
         f0_range: tuple[float, float], formant_range: tuple[float, float]) -> list[tuple[Utterance, Path, float, float]]:
    """Which entries get a copy (a seeded sample of `fraction` of them, in manifest order), where, with which factors."""
    count = round(len(entries) * fraction)
    work = []
    for i in sorted(random.Random(seed).sample(range(len(entries)), count)):
        f0, formant = draw_factors(seed, i, f0_range, formant_range)
        name = f"{i:06d}-{Path(entries[i].audio_filepath).stem}-f{f0:.3f}-v{formant:.3f}.wav"  # other factors, other file
        work.append((entries[i], out_dir / "wav" / name, f0, formant))
    return work


def copied_sources(manifests: list[Path]) -> set[str]:
    """The source recordings (`vc_source`) that earlier sets, given by their manifests, copied."""
    sources = set()
    for manifest in manifests:
        found = {e.extra["vc_source"] for e in read_manifest(manifest) if "vc_source" in e.extra}
        if not found:
            raise ManifestError(f"{manifest}: no entry has a vc_source: not a manifest written by perturb_voices")
        sources |= found
    return sources


def run(manifest: Path, out_dir: Path, fraction: float, seed: int, jobs: int,
        f0_range: tuple[float, float], formant_range: tuple[float, float],
        exclude: list[Path] | None = None) -> tuple[list[Utterance], list[str]]:
    """Make the perturbed recordings; returns their manifest entries and the skipped files' reasons."""
    from tqdm import tqdm

    entries = read_manifest(manifest)
    if exclude:
        copied = copied_sources(exclude)
        entries = [e for e in entries if e.audio_filepath not in copied]
        if not entries:
            raise ManifestError(f"{manifest}: every entry was already copied by {' '.join(map(str, exclude))}")
    work = plan(entries, out_dir, fraction, seed, f0_range, formant_range)
    with ProcessPoolExecutor(max_workers=jobs, initializer=_one_thread) as pool:
        results = list(tqdm(pool.map(perturb_entry, work, chunksize=8), total=len(work), unit="utt", file=sys.stderr))
    entries = [r for r in results if isinstance(r, Utterance)]
    return entries, [r for r in results if isinstance(r, str)]


def _one_thread() -> None:
    """Pool initializer: one BLAS/torch thread per worker (`--jobs` sets the parallelism)."""
    import torch

    torch.set_num_threads(1)


def parse_range(values: list[float], name: str) -> tuple[float, float]:
    """A (low, high) factor range; both positive, low <= high."""
    low, high = values
    if not 0 < low <= high:
        fail(f"{name}: expected 0 < LOW <= HIGH, got {low} {high}")
    return low, high


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="source manifest (JSONL)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder: wav/ and manifest.jsonl")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the entries that get a copy (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="picks the entries and their factors (default 0)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--f0-range", type=float, nargs=2, default=F0_RANGE, metavar=("LOW", "HIGH"))
    parser.add_argument("--formant-range", type=float, nargs=2, default=FORMANT_RANGE, metavar=("LOW", "HIGH"))
    parser.add_argument("--exclude", type=Path, nargs="+", default=[], metavar="MANIFEST",
                        help="earlier sets' manifests: the entries they copied get no copy here")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        fail(f"--fraction must be in (0, 1], got {args.fraction}")
    f0_range, formant_range = parse_range(args.f0_range, "--f0-range"), parse_range(args.formant_range, "--formant-range")
    try:
        import pyworld  # noqa: F401
    except ImportError:
        fail("pyworld is not installed: pip install pyworld (or the project's `augment` extra)")
    try:
        entries, skipped = run(args.manifest, args.out, args.fraction, args.seed, max(1, args.jobs), f0_range, formant_range,
                               args.exclude)
    except ManifestError as err:
        fail(str(err))
    write_tool_manifest(args.out / "manifest.jsonl", entries, skipped, args.manifest, MAX_SKIPPED_SHOWN)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as err:
        fail(str(err))
