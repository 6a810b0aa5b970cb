"""Build manifests for LibriSpeech from its standard layout.

    python recipes/librispeech/prepare.py corpus_dir=data/librispeech/download/LibriSpeech out_dir=data/librispeech

Reads `<corpus_dir>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` (lines
"<speaker>-<chapter>-<utt> TRANSCRIPT") and the `.flac` files beside it, and writes
`<out_dir>/<subset>.jsonl` per subset (text through `asr.text.normalize_text`, durations from the
FLAC headers, a "speaker" field), plus combined manifests such as `train-960.jsonl` when all their
parts are there. Utterances that cannot be used are listed and left out. Options: conf/prepare.yaml.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import torch

from asr.audio import AudioError
from asr.config import UsageError, load_config, run_main, split_args
from asr.data import ManifestError, Utterance, measure_utterance, read_manifest, write_manifest

CONF_DIR = Path(__file__).resolve().parent / "conf"
AUDIO_SUFFIX = ".flac"
MAX_PROBLEMS_SHOWN = 20


def read_chapter(folder: Path) -> tuple[list[Utterance], list[str]]:
    """Utterances of one `<speaker>/<chapter>` folder, and a line per utterance that had to be skipped."""
    speaker, chapter = folder.parent.name, folder.name
    trans = folder / f"{speaker}-{chapter}.trans.txt"
    if not trans.is_file():
        return [], [f"{folder}: no transcript file {trans.name}"]
    entries, problems = [], []
    for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        uid, _, raw = line.strip().partition(" ")
        try:
            entries.append(measure_utterance(folder / f"{uid}{AUDIO_SUFFIX}", raw, {"speaker": speaker, "chapter": chapter}))
        except (ManifestError, AudioError) as err:
            problems.append(f"{trans}:{lineno}: {err}")
    return entries, problems


def prepare_subset(folder: Path, jobs: int = 1) -> tuple[list[Utterance], list[str]]:
    """All utterances of one subset folder (sorted by file name) and the problems found."""
    chapters = sorted(p for p in folder.glob("*/*") if p.is_dir())
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:  # 1 thread each
            results = pool.map(read_chapter, chapters, chunksize=8)
    else:
        results = [read_chapter(c) for c in chapters]
    entries = sorted((e for r in results for e in r[0]), key=lambda e: Path(e.audio_filepath).name)
    problems = [p for r in results for p in r[1]]
    if not chapters:
        problems.append(f"{folder}: no <speaker>/<chapter> folders")
    return entries, problems


def main(argv: list[str]) -> int:
    """Write one manifest per subset found, then the combined ones."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"unexpected argument(s) {paths}; use key=value overrides, e.g. corpus_dir=... out_dir=...")
    cfg = load_config("prepare", overrides, config_dir=CONF_DIR)
    corpus, out_dir = Path(cfg.corpus_dir), Path(cfg.out_dir)
    if not corpus.is_dir():
        raise UsageError(f"corpus_dir {corpus} is not a folder (run download.py first, or point it at LibriSpeech/)")
    written: dict[str, Path] = {}
    failed = 0
    for subset in cfg.subsets:
        folder = corpus / subset
        if not folder.is_dir():
            print(f"{subset}: not found in {corpus}, skipped")
            continue
        entries, problems = prepare_subset(folder, cfg.jobs)
        for line in problems[:MAX_PROBLEMS_SHOWN]:
            print(f"  skipped {line}")
        if len(problems) > MAX_PROBLEMS_SHOWN:
            print(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more")
        failed += len(problems)
        if not entries:
            print(f"{subset}: no usable utterances, no manifest written")
            continue
        path = out_dir / f"{subset}.jsonl"
        write_manifest(path, entries)
        written[subset] = path
        hours = sum(e.duration for e in entries) / 3600
        speakers = len({e.extra["speaker"] for e in entries})
        print(f"{subset}: {len(entries)} utterances, {hours:.2f} h, {speakers} speakers, {len(problems)} skipped -> {path}")
    for name, parts in cfg.combine.items():
        missing = [p for p in parts if p not in written]
        if missing:
            print(f"{name}: not written, missing {', '.join(missing)}")
            continue
        entries = [e for p in parts for e in read_manifest(written[p])]
        write_manifest(out_dir / f"{name}.jsonl", entries)
        hours = sum(e.duration for e in entries) / 3600
        print(f"{name}: {len(entries)} utterances, {hours:.2f} h -> {out_dir / name}.jsonl")
    if not written:
        raise UsageError(f"no subset of {list(cfg.subsets)} found in {corpus}")
    return 1 if failed and cfg.strict else 0


if __name__ == "__main__":
    run_main(main, errors=(ManifestError,))
