#!/usr/bin/env python3
"""Make a trained model the bundled pretrained model: bundle, KenLM model and lexicon into asr/assets.

    python tools/package_model.py exp/small/best.pt --corpus data/synthetic [MORE_CORPORA ...] --lm exp/lm_q8 \\
        --lm-text data/synthetic/lm_train.txt [--out asr/assets] [--fp32]

Writes, atomically, in OUT:

    model.pt     the bundle with fp16 weights (loaded back as fp32; --fp32 keeps them as trained)
    lm.bin       copied from the --lm folder (tools/build_lm.py output)
    lexicon.txt  copied from the --lm folder

and adds to the bundle's provenance what `python -m asr.transcribe --info` prints:

    corpus            the corpus folder, the recipe, its seed, hours and voices per split (the folder's summary.json);
                      a list of them when it was trained on several corpora (several --corpus folders)
    train_wall_hours  wall-clock training time: the sum, over the run's TensorBoard event files (one per
                      start or resume), of the time between their first and last event; a run fine-tuned
                      with init_from= adds its starting bundle's (from its provenance, the bundle file, or its run's events,
                      following a chain of fine-tunings back to the first run); an average made by
                      tools/average_checkpoints.py has it already (its run's count when it was made)
    lm                LM order, n-gram counts (lm.arpa's header), size and the text it was built from

Refuses a bundle over MAX_MODEL_BYTES or an LM over MAX_LM_BYTES (the package must stay small).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

from asr import ASSETS_DIR  # noqa: E402
from asr.bundle import BundleError, load_bundle, load_tensors, save_bundle  # noqa: E402
from asr.files import atomic_path  # noqa: E402

MAX_MODEL_BYTES = 25_000_000  # the bundled model
MAX_LM_BYTES = 20_000_000     # the bundled KenLM binary
LM_FILES = ("lm.bin", "lexicon.txt")


class PackageError(Exception):
    """An expected failure (missing input, too large); printed as one line."""


def corpus_provenance(corpus_dir: Path) -> dict:
    """Folder, recipe, seed, hours and voices per split of a corpus made by recipes/synthetic/prepare.py."""
    summary_path = corpus_dir / "summary.json"
    if not summary_path.is_file():
        raise PackageError(f"{summary_path}: no such file (is {corpus_dir} a corpus made by recipes/synthetic/prepare.py?)")
    summary = json.loads(summary_path.read_text())
    hours = {split: info["hours"] for split, info in summary["splits"].items()}
    return {"path": str(corpus_dir), "recipe": "recipes/synthetic", "seed": summary["seed"], "hours": hours,
            "voices": {split: info["voices"] for split, info in summary["splits"].items()}}


def train_wall_hours(run_dir: Path) -> float | None:
    """Sum over the run's TensorBoard event files of the span between their first and last event (hours)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    total = 0.0
    files = sorted((run_dir / "tb").glob("events.out.tfevents.*"))
    for path in files:
        times = [event.wall_time for event in EventFileLoader(str(path)).Load() if event.HasField("summary")]
        if times:
            total += max(times) - min(times)
    return round(total / 3600, 2) if files else None


def recorded_wall_hours(bundle_path: Path, created: str | None) -> float | None:
    """The `train_wall_hours` a bundle file records now (a packaged model, an average), if the file is there and
    is still the bundle made at `created` (not another model written to the same path since)."""
    if not bundle_path.is_file():
        return None
    obj = load_tensors(bundle_path, "bundle")
    provenance = obj.get("provenance", {}) if isinstance(obj, dict) else {}
    return provenance.get("train_wall_hours") if provenance.get("created") == created else None


def total_wall_hours(run_dir: Path, init_from: dict | None) -> float | None:
    """`train_wall_hours` of a run plus, for a fine-tuned one, its starting bundle's: from the copy of that
    bundle's provenance taken at the start (a packaged model, an average), else from the bundle file itself (which
    may have been stamped since, if it is still that bundle), else that of the run beside it (a run's best.pt; itself perhaps fine-tuned)."""
    hours = train_wall_hours(run_dir)
    if hours is None or not init_from:
        return hours
    before = init_from.get("train_wall_hours")
    if before is None and init_from.get("bundle"):
        start = Path(init_from["bundle"])
        before = recorded_wall_hours(start, init_from.get("created"))
        if before is None:
            before = total_wall_hours(start.parent, init_from.get("init_from"))
    return None if before is None else round(hours + before, 2)


def lm_provenance(lm_dir: Path, lm_text: Path | None) -> dict:
    """Order and n-gram counts from lm.arpa's \\data\\ header, the binary's size, the source text."""
    counts = []
    arpa = lm_dir / "lm.arpa"
    if arpa.is_file():
        with arpa.open() as f:
            for line in f:
                if line.startswith("ngram "):
                    counts.append(int(line.split("=")[1]))
                elif counts and not line.strip():
                    break
    info = {"order": len(counts) or None, "ngrams": counts, "bytes": (lm_dir / "lm.bin").stat().st_size,
            "lexicon_words": sum(1 for _ in (lm_dir / "lexicon.txt").open())}
    if lm_text is not None:
        info["text"] = str(lm_text)
        info["text_sentences"] = sum(1 for _ in lm_text.open())
    return info


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy src to dst through a temporary file in dst's folder."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def package(checkpoint: Path, corpora: list[Path], lm_dir: Path, lm_text: Path | None, out: Path, half: bool) -> dict:
    """Write the bundle and LM files into `out`; returns the provenance written."""
    for name in LM_FILES:
        if not (lm_dir / name).is_file():
            raise PackageError(f"{lm_dir / name}: no such file (tools/build_lm.py writes {' and '.join(LM_FILES)})")
    lm_bytes = (lm_dir / "lm.bin").stat().st_size
    if lm_bytes > MAX_LM_BYTES:
        raise PackageError(f"{lm_dir / 'lm.bin'}: {lm_bytes / 1e6:.1f} MB is over the {MAX_LM_BYTES / 1e6:.0f} MB limit "
                           "(tools/build_lm.py --quantize 8 or --prune)")
    bundle = load_bundle(checkpoint)
    corpus = [corpus_provenance(path) for path in corpora]
    provenance = {**bundle.provenance, "corpus": corpus[0] if len(corpus) == 1 else corpus,
                  "train_wall_hours": bundle.provenance.get("train_wall_hours")  # an average records it
                  or total_wall_hours(checkpoint.parent, bundle.provenance.get("init_from")),
                  "weights": "fp16" if half else "fp32", "lm": lm_provenance(lm_dir, lm_text)}
    out.mkdir(parents=True, exist_ok=True)
    save_bundle(out / "model.pt", bundle.recognizer, bundle.tokenizer, bundle.config, provenance, half=half)
    size = (out / "model.pt").stat().st_size
    if size > MAX_MODEL_BYTES:
        (out / "model.pt").unlink()
        raise PackageError(f"{checkpoint}: the bundle is {size / 1e6:.1f} MB, over the {MAX_MODEL_BYTES / 1e6:.0f} MB limit")
    for name in LM_FILES:
        copy_atomic(lm_dir / name, out / name)
    return provenance


def main(argv: list[str]) -> int:
    """Entry point: parse arguments, package, print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="the bundle to ship (a run's best.pt)")
    parser.add_argument("--corpus", type=Path, nargs="+", required=True,
                        help="the corpus folder(s) it was trained on (each with its summary.json)")
    parser.add_argument("--lm", type=Path, required=True, help="tools/build_lm.py output folder (lm.bin, lexicon.txt)")
    parser.add_argument("--lm-text", type=Path, default=None, help="the text the LM was built from (recorded)")
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help=f"destination folder (default {ASSETS_DIR})")
    parser.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16)")
    args = parser.parse_args(argv)
    try:
        provenance = package(args.checkpoint, args.corpus, args.lm, args.lm_text, args.out, half=not args.fp32)
    except (PackageError, BundleError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name in ("model.pt", *LM_FILES):
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1e6:.1f} MB")
    print(json.dumps(provenance, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
