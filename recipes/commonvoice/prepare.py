"""Build manifests for one locale of a Common Voice release.

    python recipes/commonvoice/prepare.py corpus_dir=data/commonvoice/download/cv-corpus-17.0-2024-03-15/en \
        out_dir=data/commonvoice jobs=8

Reads `<corpus_dir>/<split>.tsv` for each split (tab-separated, a header line naming the columns;
`path` and `sentence` are needed, `client_id`, `gender`, `age` and `accents` (`accent` in old
releases) are kept as the manifest's "speaker", "gender", "age" and "accent") and the MP3s in
`<corpus_dir>/clips/`. Each clip is decoded once to 16 kHz mono FLAC in `<out_dir>/<audio_dir>/`
(`convert=false` keeps the MP3s), in `jobs` processes with a progress bar; a FLAC already there is
kept, so an interrupted run resumes where it stopped. Writes `<out_dir>/<split>.jsonl`, text
through `asr.text.normalize_text`. Lines that cannot be used (a missing or unreadable clip, an
empty sentence, one with letters outside a-z such as ß or ø, a clip listed twice, a line with the
wrong number of fields) are listed and left out. `validated_train=true` also writes
`train_validated.jsonl`: validated.tsv less every clip, speaker and sentence of dev.tsv and test.tsv.
Options: conf/prepare.yaml.
"""

from __future__ import annotations

import contextlib
import csv
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from asr.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio, save_audio
from asr.config import UsageError, load_config, run_main, split_args
from asr.data import ManifestError, Utterance, normalize_transcript, write_manifest

CONF_DIR = Path(__file__).resolve().parent / "conf"
REQUIRED_COLUMNS = ("path", "sentence")
KEPT_COLUMNS = {"client_id": "speaker", "gender": "gender", "age": "age", "accents": "accent", "accent": "accent"}
MAX_PROBLEMS_SHOWN = 20
HELD_OUT = ("dev", "test")  # the splits train_validated.jsonl shares no clip, speaker or sentence with
DROP_REASONS = ("dev/test clips", "by dev/test speakers", "of dev/test sentences")  # what it leaves out, in this order


@dataclass
class Clip:
    """One usable line of a split file: the clip, its normalized sentence, what else the manifest keeps."""

    source: Path
    text: str
    extra: dict
    line: int  # in the .tsv, for messages


def read_split(tsv: Path, clips_dir: Path) -> tuple[list[Clip], list[tuple[int, str]]]:
    """The clips of one `<split>.tsv` in file order, and (line number, message) for each line that had to be skipped.

    Raises ManifestError when the file is not a Common Voice split file (no header, or no path/sentence column).
    """
    clips, problems, seen = [], [], set()
    with tsv.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)  # sentences may hold quotes: no quoting
        header = next(reader, None)
        missing = [c for c in REQUIRED_COLUMNS if c not in (header or [])]
        if missing:
            raise ManifestError(f"{tsv}: not a Common Voice split file (no {' or '.join(missing)} column in its "
                                f"header: {header})")
        for lineno, row in enumerate(reader, 2):
            where = f"{tsv}:{lineno}"
            if not any(row):
                continue
            if len(row) != len(header):
                problems.append((lineno, f"{where}: {len(row)} fields where the header has {len(header)}"))
                continue
            fields = dict(zip(header, row))
            name = fields["path"]
            if name in seen:
                problems.append((lineno, f"{where}: clip {name} listed twice"))
                continue
            seen.add(name)
            try:
                text = normalize_transcript(fields["sentence"], f"{where}: {name}")
            except ManifestError as err:
                problems.append((lineno, str(err)))
                continue
            extra = {key: fields[column] for column, key in KEPT_COLUMNS.items() if fields.get(column)}
            clips.append(Clip(clips_dir / name, text, extra, lineno))
    return clips, problems


def convert_clip(job: tuple[Path, Path | None]) -> tuple[Path, float | str]:
    """Decode `source` to 16 kHz mono FLAC at `target` unless it is there (None: keep the source); returns the
    audio file the manifest lists and its duration in seconds, or the problem's message."""
    source, target = job
    try:
        if target is None:
            return source, audio_duration(source)
        if not target.exists():
            save_audio(target, load_audio(source, SAMPLE_RATE))  # atomic: a stopped run leaves no half file
        return target, audio_duration(target)
    except AudioError as err:
        return source, str(err)


def convert_split(clips: list[Clip], audio_dir: Path | None, jobs: int, tsv: Path
                  ) -> tuple[list[Utterance], list[tuple[int, str]]]:
    """Convert (or measure) the clips of one split in `jobs` processes; the manifest entries, and (line number,
    message) for each clip that could not be used."""
    work = [(c.source, None if audio_dir is None else audio_dir / f"{c.source.stem}.flac") for c in clips]
    if audio_dir is not None:
        audio_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            # one torch thread per worker: `jobs` sets the parallelism, and a forked child that inherits a busy
            # OpenMP pool (a caller that resampled before) would hang on its first parallel op
            pool = mp.get_context("fork").Pool(jobs, initializer=torch.set_num_threads, initargs=(1,))
            stack.enter_context(pool)
            mapped = pool.imap(convert_clip, work, chunksize=16)
        else:
            mapped = map(convert_clip, work)
        results = list(tqdm(mapped, total=len(work), desc=tsv.stem, unit="clip", mininterval=1.0))
    entries, problems = [], []
    for clip, (audio, duration) in zip(clips, results):
        if isinstance(duration, str):
            problems.append((clip.line, f"{tsv}:{clip.line}: {duration}"))
        elif duration <= 0:
            problems.append((clip.line, f"{tsv}:{clip.line}: {audio}: contains no audio samples"))
        else:
            entries.append(Utterance(str(audio.resolve()), duration, clip.text, extra=dict(clip.extra)))
    return entries, problems


def without_held_out(clips: list[Clip], held_out: list[Clip]) -> tuple[list[Clip], Counter]:
    """`clips` less every clip of `held_out`, every clip by one of its speakers and every clip of one of its
    sentences; and how many were left out for each of the three reasons."""
    names = {c.source.name for c in held_out}
    speakers = {c.extra["speaker"] for c in held_out if "speaker" in c.extra}
    texts = {c.text for c in held_out}
    kept, dropped = [], Counter()
    for clip in clips:
        if clip.source.name in names:
            dropped[DROP_REASONS[0]] += 1
        elif clip.extra.get("speaker") in speakers:
            dropped[DROP_REASONS[1]] += 1
        elif clip.text in texts:
            dropped[DROP_REASONS[2]] += 1
        else:
            kept.append(clip)
    return kept, dropped


def write_split(name: str, tsv: Path, clips: list[Clip], problems: list[tuple[int, str]], audio_dir: Path | None,
                jobs: int, out_dir: Path) -> tuple[int, int]:
    """Convert the clips of one split, list what was skipped, write `<out_dir>/<name>.jsonl`; returns (utterances
    written, lines skipped)."""
    entries, convert_problems = convert_split(clips, audio_dir, jobs, tsv)
    problems = [message for _, message in sorted(problems + convert_problems)]
    for line in problems[:MAX_PROBLEMS_SHOWN]:
        print(f"  skipped {line}")
    if len(problems) > MAX_PROBLEMS_SHOWN:
        print(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more")
    if not entries:
        print(f"{name}: no usable clips, no manifest written")
        return 0, len(problems)
    path = out_dir / f"{name}.jsonl"
    write_manifest(path, entries)
    hours = sum(e.duration for e in entries) / 3600
    speakers = len({e.extra.get("speaker") for e in entries})
    print(f"{name}: {len(entries)} utterances, {hours:.2f} h, {speakers} speakers, {len(problems)} skipped -> {path}")
    return len(entries), len(problems)


def main(argv: list[str]) -> int:
    """Write one manifest per split file found (and train_validated.jsonl when asked)."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"unexpected argument(s) {paths}; use key=value overrides, e.g. corpus_dir=... out_dir=...")
    cfg = load_config("prepare", overrides, config_dir=CONF_DIR)
    corpus, out_dir = Path(cfg.corpus_dir).expanduser(), Path(cfg.out_dir)
    clips_dir = corpus / "clips"
    if not clips_dir.is_dir():
        raise UsageError(f"corpus_dir {corpus} has no clips/ folder: point it at a release's locale folder, "
                         "cv-corpus-<version>-<date>/<locale>/ (run download.py first)")
    audio_dir = out_dir / cfg.audio_dir if cfg.convert else None
    written, failed, sources = 0, 0, {}
    for split in cfg.splits:
        tsv = corpus / f"{split}.tsv"
        if not tsv.is_file():
            print(f"{split}: no {tsv.name} in {corpus}, skipped")
            continue
        clips, problems = read_split(tsv, clips_dir)
        for other, names in sources.items():
            shared = names & {c.source.name for c in clips}
            if shared:
                print(f"  warning: {split} and {other} share {len(shared)} clips (e.g. {min(shared)}); do not train "
                      "on one and test on the other")
        sources[split] = {c.source.name for c in clips}
        count, skipped = write_split(split, tsv, clips, problems, audio_dir, cfg.jobs, out_dir)
        written += count > 0
        failed += skipped
    if cfg.validated_train:
        missing = [name for name in ("validated", *HELD_OUT) if not (corpus / f"{name}.tsv").is_file()]
        if missing:
            raise UsageError(f"validated_train=true needs {', '.join(m + '.tsv' for m in missing)} in {corpus}")
        held_out = [c for name in HELD_OUT for c in read_split(corpus / f"{name}.tsv", clips_dir)[0]]
        clips, problems = read_split(corpus / "validated.tsv", clips_dir)
        clips, dropped = without_held_out(clips, held_out)
        reasons = ", ".join(f"{dropped[why]} {why}" for why in DROP_REASONS if dropped[why]) or "none shared"
        print(f"train_validated: validated.tsv less {sum(dropped.values())} clips ({reasons})")
        count, skipped = write_split("train_validated", corpus / "validated.tsv", clips, problems, audio_dir, cfg.jobs,
                                     out_dir)
        written += count > 0
        failed += skipped
    if not written:
        raise UsageError(f"no usable split of {list(cfg.splits)} found in {corpus}")
    return 1 if failed and cfg.strict else 0


if __name__ == "__main__":
    run_main(main, errors=(ManifestError,))
