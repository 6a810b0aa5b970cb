"""python -m asr.train [overrides]: train a BiLSTM-CTC recognizer.

    python -m asr.train data=synthetic model=small out_dir=exp/small
    python -m asr.train out_dir=exp/small resume=true                 # continue exactly where it stopped
    python -m asr.train init_from=bundled data.train_manifest=... out_dir=exp/mine  # fine-tune the bundled model
    torchrun --nproc_per_node=4 -m asr.train model=large ...          # DDP (NCCL on GPUs, gloo on CPU)

Writes out_dir/last.pt (full training state, atomically, every trainer.save_every steps and on
Ctrl-C/SIGTERM), out_dir/best.pt (model bundle with the best dev WER), out_dir/metrics.jsonl (one
line per validation) and out_dir/tb/ (TensorBoard).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

import asr
from asr import ASSETS_DIR
from asr.audio import AudioError
from asr.bundle import BundleError, Recognizer, build_recognizer, inference_config, load_bundle, save_bundle
from asr.config import UsageError, load_config, pick_device, run_main, split_args
from asr.data import (
    BucketBatchSampler, ManifestError, SpeechDataset, Utterance, collate, filter_utterances, read_manifest,
)
from asr.decoding import GreedyDecoder
from asr.files import atomic_path, write_text_atomic
from asr.metrics import error_rates
from asr.text import CharTokenizer, SentencePieceTokenizer, Tokenizer, tokenizer_from_dict

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # a run stops cleanly on these (StopSignal), its workers ignore them
CHECKPOINT_VERSION = 1
OUTPUT_LAYER_PREFIX = "model.head."  # Recognizer state keys of the output layer, the part init_tokenizer=new starts afresh


@dataclass
class TrainState:
    """Loop counters saved in last.pt; with the RNG states they make resume exact."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed by this rank
    best_wer: float = math.inf
    stale_validations: int = 0  # validations since best_wer improved (early stopping)
    nonfinite_skipped: int = 0  # steps skipped for a non-finite loss or gradient
    audio_seconds: float = 0.0  # training audio seen, all ranks


@dataclass
class Distributed:
    """This process's place in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Distributed:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world)



def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """trainer.precision → the autocast dtype (None: fp32)."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in choices:
        raise UsageError(f"trainer.precision must be auto, fp32, bf16 or fp16, got {name!r}")
    if choices[name] is torch.float16 and device.type != "cuda":
        raise UsageError("trainer.precision=fp16 needs a CUDA device")
    return choices[name]


def make_tokenizer(cfg: DictConfig, train: list[Utterance]) -> Tokenizer:
    """The `tokenizer` choice: characters, or SentencePiece BPE trained on the training transcripts."""
    if cfg.tokenizer == "char":
        return CharTokenizer()
    if cfg.tokenizer == "bpe":
        return SentencePieceTokenizer.train((e.text for e in train), vocab_size=cfg.bpe_vocab_size)
    raise UsageError(f"tokenizer must be char or bpe, got {cfg.tokenizer!r}")


def make_optimizer(model: torch.nn.Module, cfg: DictConfig) -> torch.optim.AdamW:
    """AdamW; biases and normalization weights (1-D tensors) get no weight decay."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ctc_loss(logits: torch.Tensor, out_lengths: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed CTC loss (float32, blank 0, impossible alignments zeroed) and the number of target tokens."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)
    loss = F.ctc_loss(
        log_probs, batch["targets"], out_lengths, batch["target_lengths"], blank=0, reduction="sum", zero_infinity=True,
    )
    return loss, batch["target_lengths"].sum()


def filter_split(entries: list[Utterance], manifest: str, role: str, tokenizer: Tokenizer, frame_rate: float,
                 data: DictConfig, verbose: bool = True, speed_factors: Sequence[float] = (1.0,)) -> list[Utterance]:
    """Filter a manifest's utterances, printing what was dropped and why."""
    kept, report = filter_utterances(entries, tokenizer, frame_rate, data.min_duration, data.max_duration,
                                     speed_factors)
    if verbose:
        print(f"{role} {manifest}: {report}", file=sys.stderr)
    if not kept:
        raise ManifestError(f"{manifest}: no usable utterances after filtering ({report})")
    return kept


def batch_to(batch: dict, device: torch.device) -> dict:
    """Move a collated batch to `device`."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def dev_loader(entries: list[Utterance], tokenizer: Tokenizer, sample_rate: int, max_batch_seconds: float,
               **loader_args) -> DataLoader:
    """Unshuffled, duration-bucketed batches of dev utterances for `validate`."""
    dataset = SpeechDataset(entries, tokenizer, sample_rate)
    # The loader has its own generator: creating an iterator then never draws from the global RNG,
    # so validation does not perturb dropout/SpecAugment randomness and resume stays exact.
    return DataLoader(dataset, batch_sampler=BucketBatchSampler(dataset.durations, max_batch_seconds, shuffle=False),
                      generator=torch.Generator(), **loader_args)


def validate(recognizer: Recognizer, loader: DataLoader, entries: list[Utterance], tokenizer: Tokenizer,
             device: torch.device, amp: torch.dtype | None) -> dict:
    """Dev loss per token and greedy WER/CER."""
    recognizer.eval()
    decoder = GreedyDecoder(tokenizer, recognizer.frame_seconds)
    total_loss, total_tokens, refs, hyps = 0.0, 0, [], []
    for batch in start_batches(loader):
        batch = batch_to(batch, device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits, out_lengths = recognizer(batch["waves"], batch["wave_lengths"])
        loss, tokens = ctc_loss(logits, out_lengths, batch)
        total_loss += loss.item()
        total_tokens += int(tokens)
        hyps += [h.text for h in decoder.decode(logits.float().log_softmax(-1), out_lengths)]
        refs += [entries[i].text for i in batch["indices"].tolist()]
    recognizer.train()
    rates = error_rates(refs, hyps)
    return {"dev_loss": total_loss / max(1, total_tokens), "dev_wer": rates.wer, "dev_cer": rates.cer}


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temporary file, then rename over `path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict:
    """Every random generator the loop draws from."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_pos": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()` output."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def manifest_list(value: str | ListConfig) -> list[str]:
    """`data.train_manifest` as a list: one path, or a list of manifests read as one."""
    return [str(m) for m in value] if isinstance(value, ListConfig) else [str(value)]


def speed_factor_list(value: float | ListConfig) -> list[float]:
    """`data.speed_factors` as a list of positive numbers (one number is accepted too)."""
    values = list(value) if isinstance(value, ListConfig) else [value]
    if not values or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in values):
        raise UsageError(f"data.speed_factors must be positive numbers such as [0.9,1.0,1.1], got {value}")
    return [float(f) for f in values]


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts, as `key (a vs b)`."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += config_differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key} ({x} vs {y})")
    return out


def model_config(cfg: DictConfig) -> dict:
    """The resolved features/model config that a bundle and last.pt record."""
    return {"features": OmegaConf.to_container(cfg.features, resolve=True), "model": OmegaConf.to_container(cfg.model, resolve=True)}


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C or a SIGTERM sent to the whole process group (a terminal,
    Slurm's scancel) must not kill the workers mid-epoch; the main process stops them after saving.
    A worker starts with the signals blocked (`start_batches`); one that came since the fork is dropped here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_batches(loader: DataLoader) -> Iterator:
    """`iter(loader)` with Ctrl-C and SIGTERM held back while it forks the workers: a signal to the process group
    in the moment between a worker's fork and its worker_init_fn would kill it (and the run with it, as
    "DataLoader worker exited unexpectedly"). The main process gets a held-back signal as soon as they are up."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class StopSignal:
    """Turns Ctrl-C and SIGTERM into a flag the loop checks after each step (a second Ctrl-C aborts)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore(self) -> None:
        """Put back the handlers that were installed before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum


def main(argv: list[str]) -> int:
    """Entry point of `python -m asr.train`."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"asr.train takes only key=value overrides, got {' '.join(paths)!r}")
    cfg = load_config("train", overrides)
    if cfg.init_tokenizer not in ("bundle", "new"):
        raise UsageError(f"init_tokenizer must be bundle or new, got {cfg.init_tokenizer!r}")
    if cfg.init_tokenizer == "new" and not cfg.init_from:
        raise UsageError("init_tokenizer=new needs init_from (a bundle whose encoder the new output layer goes on)")
    tr = cfg.trainer
    if tr.snapshot_every and tr.keep_snapshots < 1:
        raise UsageError(f"trainer.keep_snapshots must be at least 1 when trainer.snapshot_every is on, got {tr.keep_snapshots}")
    if tr.num_threads:
        torch.set_num_threads(tr.num_threads)
    world = setup_distributed("cuda" if tr.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    device = pick_device(tr.device, world.local_rank)
    amp = pick_precision(tr.precision, device)
    speed_factors = speed_factor_list(cfg.data.speed_factors)
    out_dir = Path(cfg.out_dir)
    last_path = out_dir / "last.pt"
    resuming = bool(cfg.resume) and last_path.is_file()
    if cfg.resume and not resuming and world.main:
        print(f"resume=true but {last_path} does not exist: starting from scratch", file=sys.stderr)
    if not cfg.resume and last_path.is_file():
        raise UsageError(f"{last_path} exists: pass resume=true to continue that run, or choose another out_dir")
    checkpoint = torch.load(last_path, map_location="cpu", weights_only=True) if resuming else None
    init = load_bundle(None if cfg.init_from == "bundled" else cfg.init_from) if cfg.init_from and not checkpoint else None

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_manifests = manifest_list(cfg.data.train_manifest)
    train_source = " + ".join(train_manifests)
    train_entries = [e for m in train_manifests for e in read_manifest(m)]
    new_tokenizer = bool(init) and cfg.init_tokenizer == "new"
    tokenizer = (tokenizer_from_dict(checkpoint["tokenizer"]) if checkpoint else init.tokenizer if init and not new_tokenizer
                 else make_tokenizer(cfg, train_entries))
    config = model_config(cfg)
    if checkpoint and checkpoint["config"] != config:
        raise UsageError(f"{last_path} was trained with another features/model config; resume with the same one")
    if init and (differences := config_differences(inference_config(init.config), inference_config(config))):
        raise UsageError(f"{init.path}: init_from needs this run's features/model config to be the bundle's "
                         f"(augmentation aside); they differ in {', '.join(differences)}")
    try:
        recognizer = build_recognizer(config["features"], config["model"], len(tokenizer))
    except ValueError as err:  # a bad features/model option, e.g. model.rnn_type=foo
        raise UsageError(str(err)) from None
    # where a fine-tuned run started: written into best.pt's provenance, carried across resumes by last.pt;
    # the bundled model by its path in the package, not this machine's absolute one
    if init:  # the bundle's weights and CMVN, this run's augmentation settings
        weights = init.recognizer.state_dict()
        if new_tokenizer:  # a new output layer for the new units: keep this run's (seeded) initialization of it
            weights = {k: v for k, v in weights.items() if not k.startswith(OUTPUT_LAYER_PREFIX)}
        recognizer.load_state_dict(weights, strict=not new_tokenizer)  # the same config: only the head is missing
        start = init.path.relative_to(ASSETS_DIR.parent.parent) if cfg.init_from == "bundled" else init.path
        lineage = {"bundle": str(start), **init.provenance}
        if new_tokenizer:
            lineage["new_tokenizer"] = tokenizer.kind
    else:
        lineage = (checkpoint or {}).get("init_from")
    frame_rate = recognizer.output_frame_rate
    train = filter_split(train_entries, train_source, "train", tokenizer, frame_rate, cfg.data, world.main, speed_factors)
    dev = filter_split(read_manifest(cfg.data.dev_manifest), cfg.data.dev_manifest, "dev", tokenizer, frame_rate, cfg.data, world.main)
    if cfg.data.dev_max_utterances:
        dev = dev[: cfg.data.dev_max_utterances]
    if recognizer.features.normalize == "global" and not checkpoint and not init:
        sample = SpeechDataset(train[: cfg.data.cmvn_utterances], tokenizer)
        recognizer.features.fit_global_stats(sample[i][0] for i in range(len(sample)))
    recognizer.to(device)
    if world.main:
        hours = sum(e.duration for e in train) / 3600
        if init:
            taken = (f"weights but the output layer; a new {tokenizer.kind} tokenizer ({len(tokenizer)} units)"
                     if new_tokenizer else "weights, tokenizer")
            print(f"initialized from {init.path} ({init.provenance.get('steps', '?')} steps): {taken}, "
                  f"features/model config (augmentation: this run's)", file=sys.stderr)
        print(f"model: {recognizer.model.num_parameters() / 1e6:.2f} M parameters; train {len(train)} utterances "
              f"({hours:.2f} h), dev {len(dev)}; device {device}, precision {amp or torch.float32}, world {world.world_size}",
              file=sys.stderr)

    train_set = SpeechDataset(train, tokenizer, recognizer.features.sample_rate)
    sampler = BucketBatchSampler(train_set.durations, cfg.data.max_batch_seconds, cfg.data.num_buckets,
                                 shuffle=True, seed=cfg.seed, rank=world.rank, world_size=world.world_size,
                                 speed_factors=speed_factors)
    loader_args = {"collate_fn": collate, "num_workers": cfg.data.num_workers, "pin_memory": device.type == "cuda",
                   "worker_init_fn": ignore_stop_signals}
    train_loader = DataLoader(train_set, batch_sampler=sampler, generator=torch.Generator().manual_seed(cfg.seed), **loader_args)
    dev_batches = dev_loader(dev, tokenizer, recognizer.features.sample_rate, cfg.data.max_batch_seconds, **loader_args)

    model = DistributedDataParallel(recognizer, device_ids=[device.index] if device.type == "cuda" else None) if world.world_size > 1 else recognizer
    optimizer = make_optimizer(recognizer, cfg.optim)
    sampler.set_epoch(0)
    total_steps = min(tr.max_steps, tr.max_epochs * len(sampler))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.optim.warmup_steps, total_steps, cfg.optim.min_lr_ratio))
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    state = TrainState()
    if checkpoint:
        recognizer.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        state = TrainState(**checkpoint["state"])
        set_rng_state(checkpoint["rng"][world.rank] if world.rank < len(checkpoint["rng"]) else checkpoint["rng"][0])
        print(f"resumed from {last_path} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})", file=sys.stderr)

    writer = None
    metrics_path = out_dir / "metrics.jsonl"
    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, out_dir / "config.yaml")
        if metrics_path.exists():  # drop validations written after the checkpoint we resume from
            lines = metrics_path.read_text().splitlines()
            keep = [ln for ln in lines if checkpoint and json.loads(ln)["step"] <= state.step]
            write_text_atomic(metrics_path, "".join(ln + "\n" for ln in keep))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"), purge_step=state.step if checkpoint else None)

    def save_last() -> None:
        rngs = [rng_state()]
        if world.world_size > 1:
            rngs = [None] * world.world_size
            dist.all_gather_object(rngs, rng_state())
        if world.main:
            atomic_save({
                "checkpoint_version": CHECKPOINT_VERSION, "config": config, "tokenizer": tokenizer.to_dict(),
                "model": recognizer.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "state": asdict(state), "rng": rngs,
                "init_from": lineage,
            }, last_path)

    def provenance() -> dict:
        """What a bundle written now says about how it was trained (dev results are added by the caller)."""
        return {
            **({"init_from": lineage} if lineage else {}),
            "train_manifest": train_source, "train_hours": round(sum(e.duration for e in train) / 3600, 3),
            **({"speed_factors": speed_factors} if speed_factors != [1.0] else {}),
            "steps": state.step, "epoch": state.epoch, "seed": int(cfg.seed), "asr_version": asr.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def save_snapshot() -> None:
        """snapshots/step-<step>.pt (a bundle, for tools/average_checkpoints.py); keeps the newest keep_snapshots."""
        snapshot_dir = out_dir / "snapshots"
        save_bundle(snapshot_dir / f"step-{state.step}.pt", recognizer, tokenizer, config, provenance())
        snapshots = sorted(snapshot_dir.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
        for old in snapshots[: max(0, len(snapshots) - tr.keep_snapshots)]:
            old.unlink()

    def run_validation(train_loss: float, throughput: float) -> bool:
        """Validate on rank 0, log, keep best.pt; returns True when early stopping says stop."""
        stop = torch.zeros(1)
        if world.main:
            result = validate(recognizer, dev_batches, dev, tokenizer, device, amp)
            improved = result["dev_wer"] < state.best_wer
            if improved:
                state.best_wer, state.stale_validations = result["dev_wer"], 0
                save_bundle(out_dir / "best.pt", recognizer, tokenizer, config, {
                    **provenance(), "dev_manifest": str(cfg.data.dev_manifest),
                    "dev_wer": result["dev_wer"], "dev_cer": result["dev_cer"],
                })
            else:
                state.stale_validations += 1
            line = {"step": state.step, "epoch": state.epoch, "train_loss": train_loss, **result,
                    "audio_seconds_per_second": throughput, "lr": scheduler.get_last_lr()[0],
                    "nonfinite_skipped": state.nonfinite_skipped}
            with metrics_path.open("a") as f:
                f.write(json.dumps(line) + "\n")
            for key in ("dev_loss", "dev_wer", "dev_cer"):
                writer.add_scalar(f"dev/{key[4:]}", result[key], state.step)
            bar.write(f"step {state.step}: dev loss {result['dev_loss']:.3f}  WER {result['dev_wer']:.2%}  CER {result['dev_cer']:.2%}"
                      f"{'  (best)' if improved else ''}")
            stop[0] = float(tr.patience > 0 and state.stale_validations >= tr.patience)
        if world.world_size > 1:
            dist.broadcast(stop, 0)
        return bool(stop[0])

    stopper = StopSignal()
    bar = tqdm(total=total_steps, initial=state.step, unit="step", dynamic_ncols=True, disable=not (world.main and tr.progress))
    interval_loss, interval_tokens, interval_audio, interval_start = 0.0, 0, 0.0, time.perf_counter()
    last_validated = state.step if checkpoint else -1
    finished = early_stop = False
    flags = torch.zeros(2)  # [non-finite loss on some rank, stop signal on some rank]
    model.train()
    while not finished and state.epoch < tr.max_epochs and state.step < tr.max_steps:
        sampler.set_epoch(state.epoch, state.batch_in_epoch)
        for batch in start_batches(train_loader):
            batch = batch_to(batch, device)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits, out_lengths = model(batch["waves"], batch["wave_lengths"])
            loss_sum, tokens = ctc_loss(logits, out_lengths, batch)
            loss = loss_sum / tokens.clamp(min=1)
            flags = torch.tensor([float(not torch.isfinite(loss)), float(stopper.signum is not None)])
            if world.world_size > 1:
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            optimizer.zero_grad(set_to_none=True)
            if flags[0]:
                state.nonfinite_skipped += 1
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(recognizer.parameters(), tr.grad_clip)
                if torch.isfinite(grad_norm):
                    scaler.step(optimizer)
                else:
                    state.nonfinite_skipped += 1
                scaler.update()
                interval_loss += loss_sum.item()
                interval_tokens += int(tokens)
            scheduler.step()
            audio = batch["wave_lengths"].sum().item() / recognizer.features.sample_rate * world.world_size
            state.step += 1
            state.batch_in_epoch += 1
            state.audio_seconds += audio
            interval_audio += audio
            bar.update(1)
            elapsed = time.perf_counter() - interval_start
            if world.main and state.step % tr.log_every == 0:
                train_loss = interval_loss / max(1, interval_tokens)
                lr, speed = scheduler.get_last_lr()[0], interval_audio / elapsed
                bar.set_postfix(loss=f"{train_loss:.3f}", xRT=f"{speed:.0f}", epoch=state.epoch)
                if not tr.progress:  # no bar (a log file): the same numbers as a line
                    bar.write(f"step {state.step}/{total_steps}: train loss {train_loss:.3f}  lr {lr:.2e}  "
                              f"{speed:.1f} audio s/s  epoch {state.epoch}")
                writer.add_scalar("train/loss", train_loss, state.step)
                writer.add_scalar("train/lr", lr, state.step)
                writer.add_scalar("train/audio_seconds_per_second", speed, state.step)
            if state.step % tr.val_every == 0 or state.step >= tr.max_steps:
                early_stop = run_validation(interval_loss / max(1, interval_tokens), interval_audio / elapsed)
                last_validated = state.step
                interval_loss, interval_tokens, interval_audio, interval_start = 0.0, 0, 0.0, time.perf_counter()
            if world.main and tr.snapshot_every and state.step % tr.snapshot_every == 0:
                save_snapshot()
            if state.step % tr.save_every == 0 or flags[1] or early_stop or state.step >= tr.max_steps:
                save_last()
            if flags[1] or early_stop or state.step >= tr.max_steps:
                finished = True
                break
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
    if not flags[1] and last_validated != state.step:
        run_validation(interval_loss / max(1, interval_tokens), interval_audio / max(1e-9, time.perf_counter() - interval_start))
        save_last()
    elif not finished:
        save_last()
    bar.close()
    stopper.restore()
    if writer:
        writer.close()
    if world.main:
        why = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "stopped by SIGTERM"}.get(stopper.signum, "early stopping" if early_stop else "done")
        best = f"best dev WER {state.best_wer:.2%} (best.pt)" if math.isfinite(state.best_wer) else "not validated yet"
        print(f"{why} at step {state.step}, epoch {state.epoch}; {best}; {state.nonfinite_skipped} non-finite steps "
              f"skipped; training state in {last_path}", file=sys.stderr)
    if world.world_size > 1:
        dist.barrier()  # every rank done with the group (rank 0 was still saving) before any tears it down: a rank
        dist.destroy_process_group()  # leaving first has aborted the other's gloo threads at exit (SIGABRT)
    return 130 if stopper.signum == signal.SIGINT else 143 if stopper.signum == signal.SIGTERM else 0


if __name__ == "__main__":
    run_main(main, errors=(ManifestError, AudioError, BundleError))
