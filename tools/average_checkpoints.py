#!/usr/bin/env python3
"""Average the weights of several checkpoints of one run into one bundle (icefall's --avg, NeMo's checkpoint averaging).

    python tools/average_checkpoints.py $(ls exp/medium/snapshots/step-*.pt | sort -V | tail -n 5) \\
        -o exp/medium/avg.pt [--dev data/synthetic/dev.jsonl] [--data synthetic] [--dev-max 500] [--fp16]
    python tools/average_checkpoints.py exp/r31/snapshots/step-{1600..2500..100}.pt -o exp/r31/avg.pt \\
        --candidates 10,5,1 --dev data/synthetic/dev.jsonl --fp16

Inputs are bundles (best.pt, the snapshots that `trainer.snapshot_every` writes) or training checkpoints
(last.pt), all with the same features/model config and vocabulary; their augmentation settings (SpecAugment's,
VTLP's) may differ, so fine-tunings of one model with other augmentation can be averaged too (a "model soup").
Floating-point weights are averaged in float64 and written as float32; integer buffers are taken from the last
input (--fp16 stores the averaged floating-point weights as fp16, as the bundled model is: half the size, loaded
back as fp32). The output is a bundle whose config and provenance are the last input's (give them oldest first) with
`averaged` = the inputs' steps; `dev_wer` and `dev_cer` are dropped because they described one input, or
re-measured on --dev (greedy, as the trainer validates, with conf/data/<--data>.yaml's batch size and
dev_max_utterances), so `python -m asr.transcribe --info` never shows a number that is not the average's.
`train_wall_hours` records the run's wall-clock training time so far (tools/package_model.py's count: its
TensorBoard events plus, when it was fine-tuned, its starting bundle's), so a copy of the average away from its
run (a checkpoint to fine-tune from in a later session) still carries it.

An average is usually better than each snapshot in it (README, Checkpoint averaging, has measurements), but
not always: check it with --dev or `python -m asr.evaluate model=AVG ...` before using it. --candidates does that
choice on dev alone: with --candidates 10,5,1 it builds the average of the last ten inputs, of the last five and the
last input alone (still converted, --fp16 and --dev applied), measures each on --dev, and writes the one with the
lowest dev WER (a tie goes to the longer average), its `dev_candidates` provenance recording every candidate's WER.
A single input is allowed: that is the N = 1 candidate, a converted copy of one checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

from asr.audio import AudioError  # noqa: E402
from asr.bundle import BundleError, Recognizer, build_recognizer, inference_config, load_tensors, save_bundle  # noqa: E402
from asr.config import UsageError, fail, load_config  # noqa: E402
from asr.data import ManifestError, read_manifest  # noqa: E402
from asr.text import Tokenizer, tokenizer_from_dict  # noqa: E402
from package_model import total_wall_hours  # noqa: E402  (tools/, this script's folder)


def run_dir_of(path: Path) -> Path:
    """The run folder of a checkpoint: RUN/best.pt, RUN/last.pt, RUN/snapshots/step-N.pt."""
    return path.parent.parent if path.parent.name == "snapshots" else path.parent


def read_weights(path: Path) -> tuple[dict, dict, dict, dict]:
    """(config, tokenizer dict, state dict, provenance) of a bundle or a training checkpoint; raises BundleError."""
    if not path.is_file():
        raise BundleError(f"{path}: no such file")
    obj = load_tensors(path, "bundle or checkpoint")
    if isinstance(obj, dict) and "state_dict" in obj and "format_version" in obj:  # a bundle
        return obj["config"], obj["tokenizer"], obj["state_dict"], obj.get("provenance", {})
    if isinstance(obj, dict) and "model" in obj and "checkpoint_version" in obj:  # a training checkpoint (last.pt)
        return obj["config"], obj["tokenizer"], obj["model"], {"steps": obj["state"]["step"]}
    raise BundleError(f"{path}: neither a model bundle nor a training checkpoint")


def average_state_dicts(states: list[dict]) -> dict:
    """Mean of floating-point tensors (computed in float64, returned as float32); other tensors from the last state.
    The states must have one layout (main checks that their configs and vocabularies are equal)."""
    averaged = {}
    for key in states[0]:
        if states[-1][key].is_floating_point():
            averaged[key] = (sum(s[key].double() for s in states) / len(states)).float()
        else:
            averaged[key] = states[-1][key].clone()
    return averaged


def measure_dev(recognizer, tokenizer, manifest: str, max_utterances: int | None, max_batch_seconds: float) -> dict:
    """Greedy dev WER/CER as the trainer validates, on the manifest's first `max_utterances` utterances whose
    transcripts fit their frames (the trainer's dev set, unless its duration limits drop some)."""
    from asr.data import collate, filter_utterances
    from asr.train import dev_loader, validate

    dev, _ = filter_utterances(read_manifest(manifest), tokenizer, recognizer.output_frame_rate)
    if not dev:
        raise ManifestError(f"{manifest}: no usable utterances")
    dev = dev[:max_utterances] if max_utterances else dev
    loader = dev_loader(dev, tokenizer, recognizer.features.sample_rate, max_batch_seconds, collate_fn=collate)
    result = validate(recognizer, loader, dev, tokenizer, torch.device("cpu"), None)
    return {"dev_manifest": manifest, "dev_wer": result["dev_wer"], "dev_cer": result["dev_cer"]}


def parse_candidates(text: str, available: int) -> list[int]:
    """`10,5,1` -> [10, 5, 1], each a count of the last inputs to average; raises UsageError."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--candidates {text}: give counts of checkpoints separated by commas, e.g. 10,5,1") from None
    if not counts or min(counts) < 1 or max(counts) > available or len(set(counts)) != len(counts):
        raise UsageError(f"--candidates {text}: each count must be distinct and between 1 and the {available} inputs given")
    return sorted(counts, reverse=True)


def check_compatible(loaded: list[tuple[dict, dict, dict, dict]], names: list[str]) -> None:
    """Raise BundleError unless every input has the first one's features/model config and vocabulary."""
    first, tokenizer_dict, _, _ = loaded[0]
    for (cfg, tok, _, _), name in zip(loaded[1:], names[1:]):
        if inference_config(cfg) != inference_config(first) or tok != tokenizer_dict:
            raise BundleError(f"{name}: another features/model config or vocabulary than {names[0]}")


def build_average(loaded: list[tuple[dict, dict, dict, dict]], names: list[str],
                  fp16: bool) -> tuple[Recognizer, Tokenizer, dict, dict]:
    """(recognizer, tokenizer, config, provenance) of the mean of `loaded` (read_weights' tuples of compatible inputs,
    oldest first); with `fp16` the weights are rounded to half precision first, so a dev measurement is the stored
    weights'."""
    config = loaded[-1][0]
    state = average_state_dicts([w for _, _, w, _ in loaded])
    tokenizer = tokenizer_from_dict(loaded[-1][1])
    recognizer = build_recognizer(config["features"], config["model"], len(tokenizer))
    if fp16:
        state = {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}
    recognizer.load_state_dict(state)
    dropped = ("dev_wer", "dev_cer", "dev_manifest", "train_wall_hours")  # they described the last input
    provenance = {k: v for k, v in loaded[-1][3].items() if k not in dropped}
    provenance["averaged"] = [prov.get("steps") for _, _, _, prov in loaded]
    hours = total_wall_hours(run_dir_of(Path(names[-1])), provenance.get("init_from"))
    if hours is not None:
        provenance["train_wall_hours"] = hours
    return recognizer, tokenizer, config, provenance


def main(argv: list[str] | None = None) -> int:
    """Entry point: average the inputs (or choose among averages on dev), write the bundle, print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="bundles or last.pt checkpoints of one run, oldest first")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the averaged bundle to write")
    parser.add_argument("--dev", help="manifest to re-measure greedy dev WER/CER on (written into the provenance)")
    parser.add_argument("--data", default="synthetic", help="conf/data preset for --dev: batch size, default --dev-max")
    parser.add_argument("--dev-max", type=int, help="at most this many --dev utterances (0: all; default: the preset's dev_max_utterances)")
    parser.add_argument("--fp16", action="store_true", help="store the averaged weights as fp16 (half the file; loaded back as fp32)")
    parser.add_argument("--candidates", help="counts N,M,...: average the last N inputs, the last M, ...; write the lowest --dev WER")
    args = parser.parse_args(argv)
    try:
        counts = parse_candidates(args.candidates, len(args.inputs)) if args.candidates else [len(args.inputs)]
        if args.candidates and not args.dev:
            raise UsageError("--candidates needs --dev: the candidates are compared on its WER")
        loaded = [read_weights(p) for p in args.inputs]
        names = [str(p) for p in args.inputs]
        check_compatible(loaded, names)
        if args.dev:
            data = load_config("train", [f"data={args.data}"]).data
            dev_max = data.dev_max_utterances if args.dev_max is None else args.dev_max
        chosen, scores = None, {}
        for count in counts:  # longest first, so a tie keeps the longer average
            recognizer, tokenizer, config, provenance = build_average(loaded[-count:], names[-count:], args.fp16)
            if args.dev:
                provenance.update(measure_dev(recognizer, tokenizer, args.dev, dev_max or None, data.max_batch_seconds))
            if args.candidates:
                scores[f"last {count}"] = provenance["dev_wer"]
                print(f"candidate: last {count} (steps {provenance['averaged']}): dev WER {provenance['dev_wer']:.2%} "
                      f"CER {provenance['dev_cer']:.2%}", flush=True)
            if chosen is None or provenance["dev_wer"] < chosen[3]["dev_wer"]:
                chosen = (recognizer, tokenizer, config, provenance)
        recognizer, tokenizer, config, provenance = chosen
        if scores:
            provenance["dev_candidates"] = scores
    except (BundleError, ManifestError, AudioError, UsageError) as err:
        fail(str(err))
    save_bundle(args.out, recognizer, tokenizer, config, provenance, half=args.fp16)
    dev = f"; dev WER {provenance['dev_wer']:.2%} CER {provenance['dev_cer']:.2%}" if "dev_wer" in provenance else ""
    print(f"averaged {len(provenance['averaged'])} checkpoints (steps {provenance['averaged']}) into {args.out}{dev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
