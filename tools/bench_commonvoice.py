#!/usr/bin/env python3
"""Speed of the Common Voice recipe's preparation, and what converting the MP3s saves each epoch.

    python tools/bench_commonvoice.py data/synthetic/dev.jsonl --clips 300 --jobs 2

No Common Voice release can be downloaded here, so this makes one in its layout from the first
`--clips` utterances of a manifest: each resampled to 48 kHz and written as MP3 (as Common Voice
distributes its clips) into `<work>/cv-corpus-bench/en/clips/`, listed in `train.tsv`. Then, all in
this one run:

    prepare, convert, 1 job     recipes/commonvoice/prepare.py from nothing: decode every MP3, write 16 kHz FLAC
    prepare, convert, N jobs    the same with --jobs processes (the ratio is the parallel speed-up)
    prepare, resume             again over the finished FLACs (what a restarted run costs)
    prepare, keep MP3           convert=false: only the MP3 headers are read
    read MP3 / read FLAC        asr.audio.load_audio of every clip, as training reads it each epoch

and prints audio seconds per wall second for each, and the MP3/FLAC reading ratio. Every process uses one
torch thread, so "1 job" is one core.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torchaudio.functional as AF  # noqa: E402

from asr.audio import SAMPLE_RATE, load_audio  # noqa: E402
from asr.config import fail  # noqa: E402
from asr.data import ManifestError, read_manifest  # noqa: E402

CV_RATE = 48000  # Hz; Common Voice's MP3s
HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"


def make_release(manifest: Path, clips: int, work: Path) -> tuple[Path, float]:
    """A Common Voice-layout locale folder of the first `clips` utterances; returns it and its audio seconds."""
    entries = read_manifest(manifest)[:clips]
    locale = work / "cv-corpus-bench" / "en"
    (locale / "clips").mkdir(parents=True)
    lines = [HEADER]
    for i, entry in enumerate(entries):
        wav = load_audio(entry.audio_filepath, offset=entry.offset, duration=entry.duration)
        name = f"common_voice_en_{i}.mp3"
        sf.write(str(locale / "clips" / name), AF.resample(wav, SAMPLE_RATE, CV_RATE).numpy(), CV_RATE, format="MP3")
        lines.append(f"{entry.extra.get('voice', 'v')}\t{name}\t{entry.text}\t2\t0\t\t\t\ten\t")
    (locale / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return locale, sum(e.duration for e in entries)


def timed(label: str, audio_seconds: float, run) -> float:
    """Run `run()`, print its speed in audio seconds per wall second; returns the wall seconds."""
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    print(f"{label:<28} {wall:8.2f} s  {audio_seconds / wall:8.1f} audio s/s")
    return wall


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="utterances to make the fake release from")
    parser.add_argument("--clips", type=int, default=300, help="how many (default 300)")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the parallel run (default 2)")
    parser.add_argument("--work", type=Path, help="folder for the release and outputs (default: a temporary one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # every row on one core per process: "1 job" is the one-core baseline
    spec = importlib.util.spec_from_file_location("commonvoice_prepare", ROOT / "recipes" / "commonvoice" / "prepare.py")
    prepare = sys.modules["commonvoice_prepare"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(prepare)
    work = args.work or Path(tempfile.mkdtemp(prefix="cv-bench-"))
    try:
        locale, seconds = make_release(args.manifest, args.clips, work)
    except ManifestError as err:
        fail(str(err))
    print(f"{args.clips} clips, {seconds / 60:.1f} min of audio, 48 kHz MP3 in {locale}")
    out = work / "out"

    def run(*overrides: str) -> None:
        if prepare.main([f"corpus_dir={locale}", "splits=[train]", *overrides]) != 0:
            fail("prepare.py failed")

    one = timed("prepare, convert, 1 job", seconds, lambda: run(f"out_dir={out}1", "jobs=1"))
    many = timed(f"prepare, convert, {args.jobs} jobs", seconds, lambda: run(f"out_dir={out}", f"jobs={args.jobs}"))
    timed("prepare, resume", seconds, lambda: run(f"out_dir={out}", f"jobs={args.jobs}"))
    timed("prepare, keep MP3", seconds, lambda: run(f"out_dir={out}k", "convert=false", f"jobs={args.jobs}"))
    mp3s = sorted((locale / "clips").glob("*.mp3"))
    flacs = sorted((out / "audio").glob("*.flac"))
    read_mp3 = timed("read MP3 (1 process)", seconds, lambda: [load_audio(p) for p in mp3s])
    read_flac = timed("read FLAC (1 process)", seconds, lambda: [load_audio(p) for p in flacs])
    print(f"{args.jobs} jobs / 1 job: {one / many:.2f}x faster; reading FLAC / MP3: {read_mp3 / read_flac:.1f}x faster; "
          f"MP3 {sum(p.stat().st_size for p in mp3s) / 1e6:.1f} MB, FLAC {sum(p.stat().st_size for p in flacs) / 1e6:.1f} MB")
    if args.work is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
