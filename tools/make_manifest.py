"""Make a manifest from your own recordings.

    python tools/make_manifest.py data/mine                      # audio files with same-named .txt transcripts
    python tools/make_manifest.py data/mine/list.tsv -o out.jsonl # a TSV: audio path <TAB> transcript

A folder is searched recursively for audio files (.wav .flac .ogg .opus .mp3 .m4a); each needs a
transcript `<name>.txt` beside it. In a TSV, relative audio paths are relative to the TSV's folder.
Transcripts go through `asr.text.normalize_text`; durations are measured. Files that cannot be
used are listed with the reason and left out. The default output is `<folder>/manifest.jsonl`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.audio import AudioError
from asr.config import fail
from asr.data import ManifestError, Utterance, measure_utterance, write_tool_manifest

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a"}
MAX_SKIPPED_SHOWN = 50


def pairs_from_folder(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(audio, raw transcript) for every audio file under `folder` that has a `.txt` beside it; and the skipped."""
    pairs, skipped = [], []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            skipped.append(f"{audio}: no transcript ({transcript.name} not found)")
            continue
        pairs.append((audio, transcript.read_text(encoding="utf-8", errors="replace")))
    return pairs, skipped


def pairs_from_tsv(tsv: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """(audio, raw transcript) for every `path<TAB>text` line of `tsv`; and the lines skipped."""
    pairs, skipped = [], []
    for lineno, line in enumerate(tsv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        path, tab, text = line.partition("\t")
        if not tab:
            skipped.append(f"{tsv}:{lineno}: no TAB between the audio path and the transcript")
            continue
        audio = Path(path.strip())
        pairs.append((audio if audio.is_absolute() else tsv.parent / audio, text))
    return pairs, skipped


def make_entries(pairs: list[tuple[Path, str]]) -> tuple[list[Utterance], list[str]]:
    """Normalize transcripts and measure durations; returns the entries and a line per skipped file."""
    entries, skipped = [], []
    for audio, raw in pairs:
        try:
            entries.append(measure_utterance(audio, raw))
        except ManifestError as err:
            skipped.append(str(err))
        except AudioError as err:
            skipped.append(f"unreadable audio: {err}")
    return entries, skipped


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="a folder of audio files with .txt transcripts, or a .tsv file")
    parser.add_argument("-o", "--output", type=Path, help="manifest to write (default: manifest.jsonl in the input folder)")
    args = parser.parse_args(argv)
    source: Path = args.input
    if source.is_dir():
        pairs, skipped = pairs_from_folder(source)
        output = args.output or source / "manifest.jsonl"
    elif source.is_file():
        pairs, skipped = pairs_from_tsv(source)
        output = args.output or source.with_suffix(".jsonl")
    else:
        fail(f"{source}: no such folder or TSV file")
    if not pairs and not skipped:
        kinds = ", ".join(sorted(AUDIO_SUFFIXES))
        fail(f"{source}: no audio files ({kinds})" if source.is_dir() else f"{source}: empty TSV")
    entries, more = make_entries(pairs)
    skipped += more
    write_tool_manifest(output, entries, skipped, source, MAX_SKIPPED_SHOWN)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, UnicodeDecodeError) as err:
        fail(str(err))
