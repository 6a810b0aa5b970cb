"""python -m asr.evaluate manifest=... [model=...] [decoder=...] report_dir=...: batch evaluation.

Transcribes every utterance of a manifest in duration-bucketed batches and writes to report_dir:
    summary.json      {"wer", "cer", "num_utterances", "audio_seconds", "wall_seconds", "rtf", "model", "decoder", ...}
    utterances.jsonl  {"audio_filepath", "ref", "hyp", "wer"} per utterance, in manifest order
    report.md         the numbers, WER/CER per speaker/voice, the worst utterances aligned, the most frequent errors
WER and CER come from jiwer on `asr.text.normalize_text`-normalized text (asr/metrics.py).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr.audio import AudioError
from asr.bundle import BundleError, load_bundle
from asr.config import UsageError, load_config, pick_device, run_main, split_args
from asr.data import BucketBatchSampler, ManifestError, SpeechDataset, Utterance, collate, read_manifest
from asr.decoding import DecoderError, build_decoder, resolve_auto, resolve_bundled
from asr.files import write_text_atomic
from asr.metrics import ErrorRates, align, sum_rates, top_errors, utterance_rates


def rates_by(field: str, entries: list[Utterance], per_utterance: list[ErrorRates]) -> dict[str, dict]:
    """WER/CER for each value of the manifest field `field` (entries without it left out), worst WER first."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        if e.extra.get(field) is not None:
            groups[str(e.extra[field])].append(i)
    table = {}
    for value, members in groups.items():
        rates = sum_rates(per_utterance[i] for i in members)
        table[value] = {"wer": rates.wer, "cer": rates.cer, "num_utterances": len(members),
                        "audio_seconds": round(sum(entries[i].duration for i in members), 3)}
    return dict(sorted(table.items(), key=lambda item: (-item[1]["wer"], item[0])))


def write_report(path: Path, summary: dict, rows: list[dict], rates: ErrorRates, cfg: DictConfig) -> None:
    """report.md: headline numbers, WER/CER by group, the worst utterances with aligned ref/hyp, most frequent errors."""
    lines = [
        f"# Evaluation of `{summary['model']}` on `{summary['manifest']}`", "",
        "| WER | CER | utterances | audio | wall | RTF | decoder |", "|---|---|---|---|---|---|---|",
        f"| {summary['wer']:.2%} | {summary['cer']:.2%} | {summary['num_utterances']} | {summary['audio_seconds'] / 3600:.2f} h "
        f"| {summary['wall_seconds']:.1f} s | {summary['rtf']:.4f} | {summary['decoder']} |", "",
        f"Word errors: {rates.substitutions} substitutions, {rates.deletions} deletions, {rates.insertions} insertions "
        f"in {rates.ref_words} reference words.", "",
    ]
    for field in (f for f in cfg.group_by if f"by_{f}" in summary):
        lines += [f"## By {field}", "", f"| {field} | WER | CER | utterances | audio |", "|---|---|---|---|---|"]
        lines += [f"| {value} | {g['wer']:.2%} | {g['cer']:.2%} | {g['num_utterances']} | {g['audio_seconds'] / 60:.1f} min |"
                  for value, g in summary[f"by_{field}"].items()]
        lines.append("")
    lines += [
        f"## {cfg.worst_utterances} worst utterances", "",
    ]
    worst = sorted(rows, key=lambda r: (-r["errors"], r["audio_filepath"]))[: cfg.worst_utterances]
    for r in worst:
        lines += [f"**{r['audio_filepath']}** — WER {r['wer']:.0%}", "", "```", *align(r["ref"], r["hyp"]), "```", ""]
    for kind, counts in top_errors([r["ref"] for r in rows], [r["hyp"] for r in rows], cfg.top_errors).items():
        lines += [f"## Most frequent {kind}", "", "| count | error |", "|---|---|"]
        lines += [f"| {n} | {err} |" for err, n in counts] or ["| 0 | none |"]
        lines.append("")
    write_text_atomic(path, "\n".join(lines))


def main(argv: list[str]) -> int:
    """Entry point of `python -m asr.evaluate`."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"asr.evaluate takes key=value overrides only (manifest=...), got {' '.join(paths)!r}")
    cfg = load_config("evaluate", overrides, plain_keys=("model",))
    if OmegaConf.is_missing(cfg, "manifest"):
        raise UsageError("no manifest: python -m asr.evaluate manifest=test.jsonl [model=...] [decoder=...] [report_dir=...]")
    cfg.decoder = resolve_auto(cfg.decoder, bundled_model=cfg.model is None)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    entries = read_manifest(cfg.manifest)
    bundle = load_bundle(cfg.model, device)
    decoder = build_decoder(cfg.decoder, bundle.tokenizer, bundle.recognizer.frame_seconds)
    dataset = SpeechDataset(entries, None, bundle.recognizer.features.sample_rate)
    sampler = BucketBatchSampler(dataset.durations, cfg.batch_seconds, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                        generator=torch.Generator())
    hyps: list[str] = [""] * len(entries)
    start = time.perf_counter()
    with tqdm(total=len(entries), unit="utt", disable=None, file=sys.stderr) as bar:
        for batch in loader:
            log_probs, out_lengths = bundle.log_probs(batch["waves"].to(device), batch["wave_lengths"].to(device))
            for i, hyp in zip(batch["indices"].tolist(), decoder.decode(log_probs.cpu(), out_lengths.cpu())):
                hyps[i] = hyp.text
            bar.update(len(batch["indices"]))
    wall = time.perf_counter() - start
    per_utterance = utterance_rates([e.text for e in entries], hyps)
    rates = sum_rates(per_utterance)
    audio_seconds = sum(e.duration for e in entries)
    decoder_config = OmegaConf.to_container(cfg.decoder, resolve=True)
    for key in ("lm", "lexicon"):  # the files used, not "bundled"
        if decoder_config.get(key) is not None:
            decoder_config[key] = str(resolve_bundled(key, decoder_config[key]))
    summary = {
        "wer": rates.wer, "cer": rates.cer, "num_utterances": len(entries), "audio_seconds": round(audio_seconds, 3),
        "wall_seconds": round(wall, 3), "rtf": wall / audio_seconds, "model": str(bundle.path),
        "decoder": cfg.decoder.name, "manifest": str(cfg.manifest), "device": str(device),
        "decoder_config": decoder_config, "model_provenance": bundle.provenance,
    }
    for field in cfg.group_by:
        if table := rates_by(field, entries, per_utterance):
            summary[f"by_{field}"] = table
    rows = [{"audio_filepath": e.audio_filepath, "ref": e.text, "hyp": hyp, "wer": r.wer, "errors": r.word_errors}
            for e, hyp, r in zip(entries, hyps, per_utterance)]
    out = Path(cfg.report_dir)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "utterances.jsonl", "".join(
        json.dumps({k: r[k] for k in ("audio_filepath", "ref", "hyp", "wer")}) + "\n" for r in rows))
    write_report(out / "report.md", summary, rows, rates, cfg)
    print(f"WER {rates.wer:.2%}  CER {rates.cer:.2%}  on {len(entries)} utterances ({audio_seconds / 3600:.2f} h), "
          f"RTF {summary['rtf']:.4f}; report in {out}/")
    return 0


if __name__ == "__main__":
    run_main(main, errors=(BundleError, DecoderError, ManifestError, AudioError))
