"""Training throughput: the real pipeline against the compute-bound ceiling, measured in the same run.

    python tools/bench_train.py manifest=data/synthetic/train.jsonl model=small steps=20
    python tools/bench_train.py ... trainer.precision=bf16      # under bf16 autocast, as asr.train runs it

pipeline: DataLoader reading audio files (speed-perturbing them with data.speed_factors=[0.9,1.0,1.1])
          → log-mel + SpecAugment on the device → model → CTC loss → backward → AdamW step (exactly
          what asr.train does per step).
ceiling:  the same model and loss on random feature tensors of the same shapes, already in memory
          (no audio reading, no feature extraction).
Both run the same batches, interleaved in rounds so machine noise hits both alike. Prints audio
seconds per wall second for each and the ratio pipeline / ceiling.
"""

from __future__ import annotations

import sys
import time

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from asr.bundle import build_recognizer
from asr.config import load_config, pick_device, run_main, split_args
from asr.data import BucketBatchSampler, ManifestError, SpeechDataset, collate, filter_utterances, read_manifest
from asr.text import CharTokenizer
from asr.train import batch_to, ctc_loss, make_optimizer, pick_precision, speed_factor_list

DEFAULTS = {"manifest": "data/synthetic/train.jsonl", "steps": 20, "warmup": 3, "rounds": 3}


def main(argv: list[str]) -> int:
    """Measure and print pipeline vs ceiling throughput."""
    _, overrides = split_args(argv)
    ours = {k: v for k, v in (o.split("=", 1) for o in overrides) if k in DEFAULTS}
    opts = {**DEFAULTS, **ours}
    cfg = load_config("train", [o for o in overrides if o.split("=", 1)[0] not in DEFAULTS])
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    device = pick_device(cfg.trainer.device, 0)
    tokenizer = CharTokenizer()
    features_cfg = OmegaConf.to_container(cfg.features, resolve=True)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    torch.manual_seed(0)
    recognizer = build_recognizer(features_cfg, model_cfg, len(tokenizer)).to(device).train()
    speed_factors = speed_factor_list(cfg.data.speed_factors)
    entries, _ = filter_utterances(read_manifest(opts["manifest"]), tokenizer, recognizer.output_frame_rate,
                                   cfg.data.min_duration, cfg.data.max_duration, speed_factors)
    dataset = SpeechDataset(entries, tokenizer, recognizer.features.sample_rate)
    sampler = BucketBatchSampler(dataset.durations, cfg.data.max_batch_seconds, cfg.data.num_buckets, seed=0,
                                 speed_factors=speed_factors)
    steps, warmup = int(opts["steps"]), int(opts["warmup"])
    optimizer = make_optimizer(recognizer, cfg.optim)
    amp = pick_precision(cfg.trainer.precision, device)
    print(f"model: {recognizer.model.num_parameters() / 1e6:.2f} M parameters, "
          f"device {device}, precision {amp or torch.float32}, threads {torch.get_num_threads()}, workers {cfg.data.num_workers}, "
          f"max_batch_seconds {cfg.data.max_batch_seconds}, speed factors {speed_factors}", file=sys.stderr)

    def step(feats_or_waves: torch.Tensor, lengths: torch.Tensor, batch: dict, raw: bool) -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            if raw:
                logits, out_lengths = recognizer(feats_or_waves, lengths)
            else:
                logits, out_lengths = recognizer.model(feats_or_waves, lengths)
        loss, tokens = ctc_loss(logits, out_lengths, batch)
        optimizer.zero_grad(set_to_none=True)
        (loss / tokens).backward()
        torch.nn.utils.clip_grad_norm_(recognizer.parameters(), cfg.trainer.grad_clip)
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    results = {"pipeline": [], "ceiling": []}
    for r in range(int(opts["rounds"])):
        sampler.set_epoch(r)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.data.num_workers,
                            pin_memory=device.type == "cuda")
        shapes, audio, t0 = [], 0.0, 0.0
        for i, batch in enumerate(loader):
            if i == warmup:
                sync()
                t0, audio = time.perf_counter(), 0.0
            batch = batch_to(batch, device)
            step(batch["waves"], batch["wave_lengths"], batch, raw=True)
            audio += batch["wave_lengths"].sum().item() / recognizer.features.sample_rate
            shapes.append(({k: v.cpu() for k, v in batch.items() if k != "waves"}, recognizer.features.output_lengths(batch["wave_lengths"]).cpu()))
            if i + 1 == warmup + steps:
                break
        sync()
        results["pipeline"].append(audio / (time.perf_counter() - t0))
        # ceiling: same batches, random features already on the device
        fixed = [(torch.randn(len(fl), int(fl.max()), recognizer.features.n_mels, device=device), fl.to(device), batch_to(b, device)) for b, fl in shapes]
        audio, t0 = 0.0, 0.0
        for i, (feats, fl, b) in enumerate(fixed):
            if i == warmup:
                sync()
                t0, audio = time.perf_counter(), 0.0
            step(feats, fl, b, raw=False)
            audio += b["wave_lengths"].sum().item() / recognizer.features.sample_rate
        sync()
        results["ceiling"].append(audio / (time.perf_counter() - t0))
        print(f"round {r}: pipeline {results['pipeline'][-1]:.1f}  ceiling {results['ceiling'][-1]:.1f} audio s/s", file=sys.stderr)
    pipe = sorted(results["pipeline"])[len(results["pipeline"]) // 2]
    ceil = sorted(results["ceiling"])[len(results["ceiling"]) // 2]
    print(f"pipeline {pipe:.1f} audio s/s, ceiling {ceil:.1f} audio s/s, ratio {pipe / ceil:.3f} (median of {opts['rounds']} rounds)")
    return 0


if __name__ == "__main__":
    run_main(main, errors=(ManifestError,))
