#!/usr/bin/env python3
"""Tune the beam decoder's LM weight and word score on a dev set: WER for every pair of a grid.

    python tools/tune_lm.py manifest=data/synthetic/dev.jsonl model=exp/small/best.pt \\
        lm=exp/lm/lm.bin lexicon=exp/lm/lexicon.txt lm_weights=[0,0.5,1,1.5,2] word_scores=[-1,0,1,2]

The acoustic model runs once over the manifest; its log-probabilities are kept in memory (and, with
`cache=path.pt`, on disk as a .pt of tensors, reused while the model file and the audio list are the
same). Every (lm_weight, word_score) pair is then decoded with `BeamSearchDecoder` and scored with
`asr.metrics.error_rates`. Prints a table of WER per pair, the greedy WER as the reference line, and
the best pair as decoder overrides.

Options (key=value, Hydra-style; the rest of conf/evaluate.yaml and conf/decoder/beam.yaml apply too,
e.g. device=cpu num_threads=1 decoder.beam_threshold=20):
    manifest        the dev manifest (required)
    model           model bundle (default: the bundled model)
    lm, lexicon     KenLM model and lexicon (tools/build_lm.py writes both; default: bundled, the ones in asr/assets)
    lm_weights      list of LM weights (default [0,0.5,1,1.5,2])
    word_scores     list of word scores (default [-1,0,1,2])
    beam_size       beam size (default: conf/decoder/beam.yaml's)
    max_utterances  the first N utterances of the manifest only (default: all)
    cache           .pt file for the log-probabilities (default: none)
    out             JSON file for the whole grid with WER and CER (default: none)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from asr.audio import AudioError  # noqa: E402
from asr.bundle import Bundle, BundleError, load_bundle  # noqa: E402
from asr.config import UsageError, load_config, pick_device, run_main, split_args, tool_overrides  # noqa: E402
from asr.data import BucketBatchSampler, ManifestError, SpeechDataset, Utterance, collate, read_manifest  # noqa: E402
from asr.decoding import BeamSearchDecoder, DecoderError, GreedyDecoder, build_decoder  # noqa: E402
from asr.files import atomic_path, write_text_atomic  # noqa: E402
from asr.metrics import ErrorRates, error_rates  # noqa: E402

# tool options (added to the evaluate config) and their defaults
TOOL_DEFAULTS = {"lm_weights": "[0,0.5,1,1.5,2]", "word_scores": "[-1,0,1,2]", "max_utterances": "null",
                 "cache": "null", "out": "null"}
DECODER_ALIASES = {"lm": "decoder.lm", "lexicon": "decoder.lexicon", "beam_size": "decoder.beam_size"}
DECODE_BATCH = 64          # utterances per decoder call
CACHE_VERSION = 1
TABLE_CORNER = "lm_weight \\ word_score"  # rows: LM weights; columns: word scores
USAGE = ("python tools/tune_lm.py manifest=dev.jsonl model=best.pt lm=lm.bin lexicon=lexicon.txt "
         "[lm_weights=[0,0.5,1]] [word_scores=[-1,0,1]] [beam_size=N] [max_utterances=N] [cache=lp.pt]")


def parse_overrides(argv: list[str]) -> DictConfig:
    """The evaluate config with decoder=beam, the aliases mapped to decoder keys and the tool options added."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"tune_lm takes key=value overrides only, got {' '.join(paths)!r}; usage: {USAGE}")
    for o in overrides:
        key, _, value = o.partition("=")
        if key == "decoder" and value != "beam":
            raise UsageError(f"tune_lm tunes the beam decoder; decoder={value} is not allowed")
    rewritten = tool_overrides([o for o in overrides if not o.startswith("decoder=")], TOOL_DEFAULTS, DECODER_ALIASES)
    cfg = load_config("evaluate", ["decoder=beam", *rewritten], plain_keys=("model",))
    if OmegaConf.is_missing(cfg, "manifest"):
        raise UsageError(f"no manifest; usage: {USAGE}")
    if cfg.decoder.lm is None or cfg.decoder.lexicon is None:
        raise UsageError(f"tune_lm needs an LM and a lexicon, not null (tools/build_lm.py writes both); usage: {USAGE}")
    return cfg


def number_list(cfg: DictConfig, key: str) -> list[float]:
    """A non-empty list of numbers from option `key` (a single number is a list of one)."""
    value = cfg[key]
    items = list(value) if isinstance(value, ListConfig) else [value]
    if not items or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in items):
        raise UsageError(f"{key} must be a non-empty list of finite numbers, e.g. {key}={TOOL_DEFAULTS[key]}, got {value}")
    return [float(x) for x in items]


def _cache_key(bundle: Bundle, entries: list[Utterance]) -> dict:
    stat = Path(bundle.path).stat()
    return {"version": CACHE_VERSION, "model": str(Path(bundle.path).resolve()), "model_size": stat.st_size,
            "model_mtime_ns": stat.st_mtime_ns,
            "audio": [f"{e.audio_filepath}:{e.offset}:{e.duration}" for e in entries]}


def acoustic_log_probs(bundle: Bundle, entries: list[Utterance], device: torch.device, batch_seconds: float,
                       num_workers: int) -> list[torch.Tensor]:
    """CTC log-probabilities (T_i, V) of every utterance, in manifest order, on the CPU."""
    dataset = SpeechDataset(entries, None, bundle.recognizer.features.sample_rate)
    sampler = BucketBatchSampler(dataset.durations, batch_seconds, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    out: list[torch.Tensor | None] = [None] * len(entries)
    for batch in loader:
        log_probs, lengths = bundle.log_probs(batch["waves"].to(device), batch["wave_lengths"].to(device))
        log_probs, lengths = log_probs.cpu(), lengths.cpu()
        for b, i in enumerate(batch["indices"].tolist()):
            out[i] = log_probs[b, : int(lengths[b])].clone()
    return out  # type: ignore[return-value]


def cached_log_probs(cache: str | None, bundle: Bundle, entries: list[Utterance],
                     compute: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
    """`compute()`'s log-probabilities, read from `cache` when it was written for this model and audio list."""
    if cache is None:
        return compute()
    path, key = Path(cache), _cache_key(bundle, entries)
    if path.is_file():
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if obj.get("key") == key:
                print(f"log-probabilities from {path}", file=sys.stderr)
                return obj["log_probs"]
            print(f"{path} was written for another model or manifest; recomputing", file=sys.stderr)
        except Exception as err:  # a truncated or foreign file: recompute and overwrite it
            print(f"{path} is unreadable ({type(err).__name__}); recomputing", file=sys.stderr)
    log_probs = compute()
    with atomic_path(path) as tmp:
        torch.save({"key": key, "log_probs": log_probs}, tmp)
    return log_probs


def padded_batches(log_probs: list[torch.Tensor], size: int = DECODE_BATCH) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(B, T, V) padded log-probability batches with their lengths, in utterance order."""
    batches = []
    for i in range(0, len(log_probs), size):
        chunk = log_probs[i : i + size]
        batches.append((torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True),
                        torch.tensor([len(x) for x in chunk], dtype=torch.long)))
    return batches


def decode_all(decoder: GreedyDecoder | BeamSearchDecoder, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[str]:
    """Transcripts of every utterance."""
    return [hyp.text for lp, lengths in batches for hyp in decoder.decode(lp, lengths)]


def format_table(lm_weights: list[float], word_scores: list[float], wer: dict[tuple[float, float], float]) -> str:
    """WER (%) with one row per LM weight and one column per word score."""
    first, width = len(TABLE_CORNER) + 2, 9
    lines = [f"{TABLE_CORNER:>{first}}" + "".join(f"{s:>{width}g}" for s in word_scores)]
    for w in lm_weights:
        lines.append(f"{w:>{first}g}" + "".join(f"{100 * wer[w, s]:>{width}.2f}" for s in word_scores))
    return "\n".join(lines)


def _rates_json(r: ErrorRates) -> dict:
    return {"wer": r.wer, "cer": r.cer, "substitutions": r.substitutions, "deletions": r.deletions,
            "insertions": r.insertions, "ref_words": r.ref_words}


def main(argv: list[str]) -> int:
    """Decode the grid and print the WER table and the best pair."""
    cfg = parse_overrides(argv)
    lm_weights, word_scores = number_list(cfg, "lm_weights"), number_list(cfg, "word_scores")
    if cfg.max_utterances is not None and (not isinstance(cfg.max_utterances, int) or cfg.max_utterances < 1):
        raise UsageError(f"max_utterances must be a positive integer, got {cfg.max_utterances}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    entries = read_manifest(cfg.manifest)[: cfg.max_utterances]
    bundle = load_bundle(cfg.model, device)
    frame_seconds = bundle.recognizer.frame_seconds
    beam_cfg = OmegaConf.to_container(cfg.decoder, resolve=True)

    def beam(lm_weight: float, word_score: float) -> GreedyDecoder | BeamSearchDecoder:
        return build_decoder({**beam_cfg, "lm_weight": lm_weight, "word_score": word_score, "nbest": 1},
                             bundle.tokenizer, frame_seconds)

    # the first grid point's decoder is built now, so a bad LM or lexicon fails before the acoustic model runs
    prebuilt = {(lm_weights[0], word_scores[0]): beam(lm_weights[0], word_scores[0])}
    start = time.perf_counter()
    log_probs = cached_log_probs(cfg.cache, bundle, entries, lambda: acoustic_log_probs(
        bundle, entries, device, cfg.batch_seconds, cfg.num_workers))
    audio_seconds = sum(e.duration for e in entries)
    print(f"acoustic model: {len(entries)} utterances, {audio_seconds / 60:.1f} min of audio, "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    batches = padded_batches(log_probs)
    refs = [e.text for e in entries]
    greedy = error_rates(refs, decode_all(GreedyDecoder(bundle.tokenizer, frame_seconds), batches))
    grid: dict[tuple[float, float], ErrorRates] = {}
    for w in lm_weights:
        for s in word_scores:
            began = time.perf_counter()
            decoder = prebuilt.pop((w, s), None) or beam(w, s)
            grid[w, s] = error_rates(refs, decode_all(decoder, batches))
            print(f"lm_weight={w:g} word_score={s:g}: WER {grid[w, s].wer:.2%} "
                  f"({time.perf_counter() - began:.1f} s)", file=sys.stderr)
    best = min(grid, key=lambda k: grid[k].wer)  # the first of equal WERs, in grid order

    print(f"WER (%) on {len(entries)} utterances of {cfg.manifest}, beam_size {cfg.decoder.beam_size}, "
          f"lm {cfg.decoder.lm}")
    print(format_table(lm_weights, word_scores, {k: r.wer for k, r in grid.items()}))
    print(f"greedy (no LM): WER {greedy.wer:.2%}")
    print(f"best: lm_weight={best[0]:g} word_score={best[1]:g} WER {grid[best].wer:.2%} "
          f"(decoder.lm_weight={best[0]:g} decoder.word_score={best[1]:g})")
    if cfg.out is not None:
        result = {"manifest": str(cfg.manifest), "model": str(bundle.path), "num_utterances": len(entries),
                  "decoder": beam_cfg, "greedy": _rates_json(greedy),
                  "grid": [{"lm_weight": w, "word_score": s, **_rates_json(r)} for (w, s), r in grid.items()],
                  "best": {"lm_weight": best[0], "word_score": best[1], **_rates_json(grid[best])}}
        write_text_atomic(cfg.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main, errors=(BundleError, DecoderError, ManifestError, AudioError))
