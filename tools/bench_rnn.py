"""The recurrent stack on the CPU: packed sequences against the padded path, fp32 and bf16, in the same run.

    python tools/bench_rnn.py model=medium batch=24 seconds=10 rounds=3 threads=2

AcousticModel runs its BiLSTM on packed sequences on CUDA (cuDNN) and on the padded batch elsewhere
(`StackedRNN.forward_padded`, each direction from a zero state, the reverse one on sequences flipped within
their lengths). This times, on random features of a padded batch like the duration-bucketed ones of training
(`batch` utterances of `seconds` ± 10 %), the model's forward + CTC loss + backward (a training step without
the optimizer) and its forward alone (inference), for both paths, in fp32 and under CPU bf16 autocast. The
arms are interleaved in rounds so that machine noise hits them alike; the medians and their ratios to
packed fp32 (the path before) are printed.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from omegaconf import OmegaConf

from asr.config import CONF_DIR, UsageError, run_main, split_args
from asr.model import AcousticModel

DEFAULTS = {"model": "medium", "batch": 24, "seconds": 10.0, "rounds": 3, "threads": 2, "vocab": 29, "n_mels": 80}
FRAMES_PER_SECOND = 100  # feature frames (10 ms hop)


def main(argv: list[str]) -> int:
    """Time both recurrent paths in fp32 and bf16 and print seconds per batch and ratios."""
    _, overrides = split_args(argv)
    opts = dict(DEFAULTS)
    for key, _, value in (o.partition("=") for o in overrides):
        if key not in DEFAULTS:
            raise UsageError(f"unknown option {key!r}; options: {', '.join(DEFAULTS)}")
        try:
            opts[key] = type(DEFAULTS[key])(value)
        except ValueError:
            raise UsageError(f"{key} must be a {type(DEFAULTS[key]).__name__}, got {value!r}") from None
    preset = CONF_DIR / "model" / f"{opts['model']}.yaml"
    if not preset.is_file():
        raise UsageError(f"no model preset {preset}")
    torch.set_num_threads(opts["threads"])
    torch.manual_seed(0)
    model = AcousticModel(opts["n_mels"], opts["vocab"], **OmegaConf.to_container(OmegaConf.load(preset))).train()
    b, frames = opts["batch"], int(opts["seconds"] * FRAMES_PER_SECOND)
    lengths = torch.randint(int(0.9 * frames), int(1.1 * frames) + 1, (b,))
    feats = torch.randn(b, int(lengths.max()), opts["n_mels"])
    targets = torch.randint(1, opts["vocab"], (b, int(opts["seconds"] * 15)))  # about 15 characters per second
    target_lengths = torch.full((b,), targets.shape[1])
    audio = lengths.sum().item() / FRAMES_PER_SECOND
    print(f"model {opts['model']}: {model.num_parameters() / 1e6:.2f} M parameters; batch {b} × {opts['seconds']} s "
          f"± 10 % ({audio:.0f} audio s); {torch.get_num_threads()} threads", file=sys.stderr)

    def train_step(packed: bool, bf16: bool) -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, out_lengths = model(feats, lengths, packed=packed)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        torch.nn.functional.ctc_loss(log_probs, targets, out_lengths, target_lengths, zero_infinity=True).backward()

    @torch.no_grad()
    def infer(packed: bool, bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.eval()(feats, lengths, packed=packed)
        model.train()

    arms = [(packed, bf16) for bf16 in (False, True) for packed in (True, False)]
    times: dict[tuple[str, bool, bool], list[float]] = {}
    for r in range(opts["rounds"]):
        for what, fn in (("train step", train_step), ("inference", infer)):
            for packed, bf16 in arms:
                fn(packed, bf16)  # warm-up: oneDNN primitives, allocator
                t0 = time.perf_counter()
                fn(packed, bf16)
                times.setdefault((what, packed, bf16), []).append(time.perf_counter() - t0)
        print(f"round {r} done", file=sys.stderr)
    for what in ("train step", "inference"):
        base = statistics.median(times[what, True, False])
        for packed, bf16 in arms:
            t = statistics.median(times[what, packed, bf16])
            print(f"{what:10s}  {'packed' if packed else 'padded':6s} {'bf16' if bf16 else 'fp32'}: {t:6.3f} s per batch, "
                  f"{audio / t:7.1f} audio s/s, {base / t:5.2f}x packed fp32")
    return 0


if __name__ == "__main__":
    run_main(main)
