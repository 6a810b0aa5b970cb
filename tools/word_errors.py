#!/usr/bin/env python3
"""Where the word errors are: an evaluation's errors by how often each word occurs in the training transcripts.

    python tools/word_errors.py exp/small/eval/test-greedy --train data/synthetic/train.jsonl [--train more.jsonl]

Reads the `utterances.jsonl` that `python -m asr.evaluate ... report_dir=DIR` writes and counts every word
of the training manifests' transcripts (normalized as the scorer does). Prints a Markdown table: for
words never seen in training, seen 1-9 times, 10-99, 100-999 and 1000 or more, their share of the
reference words, the fraction of them that were substituted or deleted, and their share of all word
errors (insertions, which belong to no reference word, get their own line). A character-level CTC
model has to spell a word it has never heard from its sound alone; this table says how much of the
WER that is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

from asr.config import fail  # noqa: E402
from asr.data import ManifestError, read_manifest  # noqa: E402
from asr.metrics import errors_by_frequency  # noqa: E402
from asr.text import normalize_text  # noqa: E402


def read_report(path: Path) -> tuple[list[str], list[str]]:
    """References and hypotheses of an evaluation report (its folder or its utterances.jsonl)."""
    if path.is_dir():
        path = path / "utterances.jsonl"
    if not path.is_file():
        raise ManifestError(f"{path}: no such file (asr.evaluate writes it into report_dir)")
    refs, hyps = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            refs.append(str(row["ref"]))
            hyps.append(str(row["hyp"]))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ManifestError(f"{path}:{n}: not a line of asr.evaluate's utterances.jsonl ({err})") from None
    if not any(ref.split() for ref in refs):
        raise ManifestError(f"{path}: no reference words")
    return refs, hyps


def word_counts(manifests: list[str]) -> Counter[str]:
    """How often each (normalized) word occurs in the manifests' transcripts."""
    counts: Counter[str] = Counter()
    for m in manifests:
        for entry in read_manifest(m):
            counts.update(normalize_text(entry.text).split())
    return counts


def table(rows: list[dict], insertions: int) -> str:
    """The Markdown table of `errors_by_frequency`'s result."""
    words = sum(r["words"] for r in rows)
    errors = sum(r["errors"] for r in rows) + insertions
    lines = ["| seen in training | reference words | share | substituted or deleted | share of errors |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        wrong = f"{r['errors'] / r['words']:.1%}" if r["words"] else "-"
        lines.append(f"| {r['group']} times | {r['words']} | {r['words'] / words:.1%} | {wrong} | "
                     f"{r['errors'] / max(errors, 1):.1%} |")
    lines.append(f"| insertions | - | - | {insertions} words | {insertions / max(errors, 1):.1%} |")
    lines.append(f"\nWER {errors / words:.2%} ({errors} errors in {words} reference words)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python tools/word_errors.py`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="asr.evaluate's report_dir, or its utterances.jsonl")
    parser.add_argument("--train", action="append", required=True, help="training manifest (repeat for several)")
    args = parser.parse_args(argv)
    try:
        refs, hyps = read_report(args.report)
        counts = word_counts(args.train)
    except (ManifestError, OSError) as err:
        fail(str(err))
    rows, insertions = errors_by_frequency(refs, hyps, counts)
    print(table(rows, insertions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
