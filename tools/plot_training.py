#!/usr/bin/env python3
"""Plot a training run's curves: loss, dev error rates and learning rate against the step.

    python tools/plot_training.py exp/small [--out exp/small/training.png] [--title "small, synthetic"]
    python tools/plot_training.py exp/small exp/medium --out compare.png   # several runs: dev WER side by side

Reads what `python -m asr.train` writes in its out_dir:

    tb/events.out.tfevents.*  train/loss (running mean since the last validation) and train/lr every
                              trainer.log_every steps; one file per start or resume, and where a
                              resumed run repeats steps the later file wins
    metrics.jsonl             one line per validation: train_loss, dev_loss, dev_wer, dev_cer

and writes one PNG with three panels (loss; dev WER and CER; learning rate), the best dev WER marked.
Given several runs, it writes one PNG comparing their dev WER against the step and against the
training wall time (the summed spans of each run's event files: time between a stop and a resume is
not counted).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

from asr.plotting import pyplot, save_figure  # noqa: E402


class PlotError(Exception):
    """An expected failure (not a training run, nothing logged yet); printed as one line."""


def event_file_time(path: Path) -> int:
    """The creation time in a TensorBoard event file's name (events.out.tfevents.TIME.HOST...)."""
    field = path.name.split(".")[3:4]
    return int(field[0]) if field and field[0].isdigit() else 0


def read_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from the run's TensorBoard event files, later files overriding earlier ones."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    scalars: dict[str, dict[int, float]] = {}
    files = sorted((run_dir / "tb").glob("events.out.tfevents.*"), key=event_file_time)
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("summary"):
                for value in event.summary.value:
                    if value.HasField("simple_value"):  # the writer's form; the loader converts it to a tensor
                        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
                    elif value.HasField("tensor") and len(value.tensor.float_val) == 1:
                        scalars.setdefault(value.tag, {})[event.step] = value.tensor.float_val[0]
    return scalars


def wall_hours(run_dir: Path) -> dict[int, float]:
    """step -> training wall hours spent up to it, from the times of the run's logged scalars: each event
    file (one start or resume) adds the span from its first to its last event; a later file's repeated
    steps get the later, larger time (the repeated work was spent too)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    hours: dict[int, float] = {}
    spent = 0.0
    for path in sorted((run_dir / "tb").glob("events.out.tfevents.*"), key=event_file_time):
        times = [(e.step, e.wall_time) for e in EventFileLoader(str(path)).Load() if e.HasField("summary")]
        if not times:
            continue
        first = times[0][1]
        for step, t in times:
            hours[step] = spent + (t - first) / 3600
        spent += (times[-1][1] - first) / 3600
    return hours


def read_validations(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl lines (one per validation), in step order."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"{path}: no such file (is {run_dir} an asr.train out_dir?)")
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PlotError(f"{path}:{number}: not JSON ({e.msg})") from None
    if not lines:
        raise PlotError(f"{path}: no validation yet (the first comes after trainer.val_every steps)")
    return sorted(lines, key=lambda m: m["step"])


def plot_training(run_dir: Path, out: Path, title: str) -> Path:
    """Write the three-panel PNG for `run_dir` to `out` and return it."""
    validations = read_validations(run_dir)
    scalars = read_scalars(run_dir)
    steps = [m["step"] for m in validations]

    fig, (ax_loss, ax_wer, ax_lr) = pyplot().subplots(3, 1, figsize=(8, 8.5), dpi=100, sharex=True,
                                                 gridspec_kw={"height_ratios": [3, 3, 1.4]})
    if "train/loss" in scalars:
        s = sorted(scalars["train/loss"].items())
        ax_loss.plot([k for k, _ in s], [v for _, v in s], color="tab:blue", alpha=0.35, lw=0.8,
                     label="train loss (running mean, restarts after each validation)")
    ax_loss.plot(steps, [m["train_loss"] for m in validations], "o-", color="tab:blue", ms=3,
                 label="train loss (mean over the steps since the last validation)")
    ax_loss.plot(steps, [m["dev_loss"] for m in validations], "o-", color="tab:orange", ms=3, label="dev loss")
    ax_loss.set_ylabel("CTC loss per token")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3, which="both")

    ax_wer.plot(steps, [100 * m["dev_wer"] for m in validations], "o-", color="tab:red", ms=3, label="dev WER (greedy)")
    ax_wer.plot(steps, [100 * m["dev_cer"] for m in validations], "o-", color="tab:purple", ms=3, label="dev CER (greedy)")
    best = min(validations, key=lambda m: m["dev_wer"])
    ax_wer.annotate(f"best {100 * best['dev_wer']:.1f}% @ {best['step']}", (best["step"], 100 * best["dev_wer"]),
                    textcoords="offset points", xytext=(-10, 12), ha="right", fontsize=8)
    ax_wer.set_ylabel("%")
    ax_wer.legend(fontsize=8)
    ax_wer.grid(alpha=0.3)

    if "train/lr" in scalars:
        s = sorted(scalars["train/lr"].items())
        ax_lr.plot([k for k, _ in s], [v for _, v in s], color="tab:green", lw=1)
    else:
        ax_lr.plot(steps, [m["lr"] for m in validations], "o-", color="tab:green", ms=3)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)

    fig.suptitle(title)
    return save_figure(fig, out)


def plot_comparison(run_dirs: list[Path], out: Path, title: str) -> Path:
    """Write a PNG of the runs' dev WER against the step (left) and the training wall hours (right)."""
    runs = [(run_dir, read_validations(run_dir), wall_hours(run_dir)) for run_dir in run_dirs]
    fig, (ax_step, ax_time) = pyplot().subplots(1, 2, figsize=(11, 4.5), dpi=100, sharey=True)
    for run_dir, validations, hours in runs:
        best = min(100 * m["dev_wer"] for m in validations)
        label = f"{run_dir.name} (best {best:.1f}%)"
        line, = ax_step.plot([m["step"] for m in validations], [100 * m["dev_wer"] for m in validations], "o-", ms=3,
                             label=label)
        timed = [m for m in validations if m["step"] in hours]  # val_every a multiple of log_every: all of them
        ax_time.plot([hours[m["step"]] for m in timed], [100 * m["dev_wer"] for m in timed], "o-", ms=3,
                     color=line.get_color(), label=label)
    ax_step.set_xlabel("step")
    ax_step.set_ylabel("dev WER, greedy (%)")
    ax_time.set_xlabel("training wall time (hours)")
    for ax in (ax_step, ax_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    """Command line: `python tools/plot_training.py RUN_DIR [RUN_DIR ...] [--out PNG] [--title TEXT]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="run_dir",
                        help="an asr.train out_dir (metrics.jsonl, tb/); several: compare their dev WER")
    parser.add_argument("--out", type=Path,
                        help="PNG to write (default: RUN_DIR/training.png, or the first RUN_DIR/compare.png)")
    parser.add_argument("--title", help="figure title (default: the run folders' names)")
    args = parser.parse_args(argv)
    first = args.run_dirs[0]
    title = args.title or " vs ".join(d.name for d in args.run_dirs)
    try:
        if len(args.run_dirs) == 1:
            out = plot_training(first, args.out or first / "training.png", title)
        else:
            out = plot_comparison(args.run_dirs, args.out or first / "compare.png", title)
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
