"""Scoring: word and character error rates via jiwer, alignments for display, most frequent errors.

References and hypotheses are both passed through `asr.text.normalize_text` first, so "Mr. Smith
paid $5" and "mr smith paid five dollars" score as equal where the spoken forms agree.

Error rate = (substitutions + deletions + insertions) / reference words (or characters, spaces
included), pooled over the corpus (not a mean of per-utterance rates). An empty reference has no
denominator: its error rate is defined as 0.0 when the hypothesis is empty too and 1.0 otherwise.
In a corpus its insertions still count as errors while it adds no reference words.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import jiwer

from asr.text import normalize_text

TOP_ERRORS = 10  # default number of most frequent substitutions / insertions / deletions
FREQUENCY_EDGES = (0, 1, 10, 100, 1000)  # lower edges of the word-count groups of `errors_by_frequency`
SUBSTITUTION_ARROW = " → "
_OPS = {"equal": " ", "substitute": "S", "delete": "D", "insert": "I"}


@dataclass
class ErrorRates:
    """Corpus scores: WER and CER, and the word-level totals behind the WER."""

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    ref_words: int
    char_errors: int
    ref_chars: int
    num_utterances: int

    @property
    def word_errors(self) -> int:
        """Substitutions + deletions + insertions (words)."""
        return self.substitutions + self.deletions + self.insertions


@dataclass
class Alignment:
    """A reference/hypothesis pair aligned word by word for display.

    `ref` and `hyp` have equal-width columns, '*' filling a missing word; `ops` marks each column
    ' ' (correct), 'S' (substitution), 'D' (deletion) or 'I' (insertion), as jiwer displays them.
    Iterating gives the three display lines "REF: …", "HYP: …" and the marks.
    """

    ref: str
    hyp: str
    ops: str

    def __iter__(self) -> Iterator[str]:
        return iter([f"REF: {self.ref}".rstrip(), f"HYP: {self.hyp}".rstrip(), f"     {self.ops}".rstrip()])

    def __str__(self) -> str:
        return "\n".join(self)


def _rate(errors: int, ref_len: int) -> float:
    if ref_len == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / ref_len


def _normalized(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("refs and hyps must be sequences of strings, not a single string")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return [normalize_text(r) for r in refs], [normalize_text(h) for h in hyps]


def _alignments(refs: list[str], hyps: list[str], characters: bool = False) -> list[list[jiwer.AlignmentChunk]]:
    """jiwer's alignment of every pair (pairs with both sides empty need none and get [])."""
    out: list[list[jiwer.AlignmentChunk]] = [[] for _ in refs]
    idx = [i for i, (r, h) in enumerate(zip(refs, hyps)) if r or h]
    if idx:
        process = jiwer.process_characters if characters else jiwer.process_words
        result = process([refs[i] for i in idx], [hyps[i] for i in idx])
        for i, chunks in zip(idx, result.alignments):
            out[i] = chunks
    return out


def _counts(chunks: Sequence[jiwer.AlignmentChunk]) -> Counter[str]:
    """Operation counts of one alignment: 'equal', 'substitute', 'delete', 'insert'."""
    c: Counter[str] = Counter()
    for ch in chunks:
        span = ch.hyp_end_idx - ch.hyp_start_idx if ch.type == "insert" else ch.ref_end_idx - ch.ref_start_idx
        c[ch.type] += span
    return c


def _errors(c: Counter[str]) -> int:
    return c["substitute"] + c["delete"] + c["insert"]


def _ref_len(c: Counter[str]) -> int:
    return c["equal"] + c["substitute"] + c["delete"]


def utterance_rates(refs: Sequence[str], hyps: Sequence[str]) -> list[ErrorRates]:
    """Each utterance's scores after normalizing both sides (one jiwer pass over all pairs); `sum_rates` of any
    subset gives that subset's corpus scores without aligning again."""
    refs, hyps = _normalized(refs, hyps)
    return [
        ErrorRates(
            wer=_rate(_errors(w), _ref_len(w)), cer=_rate(_errors(c), _ref_len(c)),
            substitutions=w["substitute"], deletions=w["delete"], insertions=w["insert"], hits=w["equal"],
            ref_words=_ref_len(w), char_errors=_errors(c), ref_chars=_ref_len(c), num_utterances=1,
        )
        for w, c in zip(map(_counts, _alignments(refs, hyps)), map(_counts, _alignments(refs, hyps, characters=True)))
    ]


def sum_rates(rates: Iterable[ErrorRates]) -> ErrorRates:
    """Corpus scores of several utterances (or sets): the counts are summed, then the rates taken."""
    rates = list(rates)
    total = {key: sum(getattr(r, key) for r in rates) for key in (
        "substitutions", "deletions", "insertions", "hits", "ref_words", "char_errors", "ref_chars", "num_utterances")}
    word_errors = total["substitutions"] + total["deletions"] + total["insertions"]
    return ErrorRates(wer=_rate(word_errors, total["ref_words"]), cer=_rate(total["char_errors"], total["ref_chars"]), **total)


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRates:
    """Corpus WER and CER with word totals, after normalizing both sides."""
    return sum_rates(utterance_rates(refs, hyps))


def utterance_wer(ref: str, hyp: str) -> tuple[float, int]:
    """(WER, word errors) of one utterance after normalization; an empty reference gives 0.0 or 1.0."""
    ref, hyp = normalize_text(ref), normalize_text(hyp)
    c = _counts(_alignments([ref], [hyp])[0])
    return _rate(_errors(c), _ref_len(c)), _errors(c)


def align(ref: str, hyp: str) -> Alignment:
    """Word alignment of one reference/hypothesis pair (both normalized), for display."""
    ref, hyp = normalize_text(ref), normalize_text(hyp)
    ref_words, hyp_words = ref.split(), hyp.split()
    ref_cols, hyp_cols, op_cols = [], [], []
    for ch in _alignments([ref], [hyp])[0]:
        r = ref_words[ch.ref_start_idx : ch.ref_end_idx]
        h = hyp_words[ch.hyp_start_idx : ch.hyp_end_idx]
        if ch.type == "delete":
            h = ["*" * len(w) for w in r]
        elif ch.type == "insert":
            r = ["*" * len(w) for w in h]
        for rw, hw in zip(r, h):
            width = max(len(rw), len(hw))
            ref_cols.append(rw.ljust(width))
            hyp_cols.append(hw.ljust(width))
            op_cols.append(_OPS[ch.type].ljust(width))
    return Alignment(" ".join(ref_cols).rstrip(), " ".join(hyp_cols).rstrip(), " ".join(op_cols).rstrip())


def top_errors(refs: Sequence[str], hyps: Sequence[str], k: int = TOP_ERRORS) -> dict[str, list[tuple[str, int]]]:
    """The `k` most frequent word errors of a corpus, as (label, count) lists, most frequent first.

    Keys "substitutions" (labels "ref → hyp"), "insertions" and "deletions" (labels: the word).
    Equal counts are ordered alphabetically, so reports are deterministic.
    """
    refs, hyps = _normalized(refs, hyps)
    found: dict[str, Counter[str]] = {"substitutions": Counter(), "insertions": Counter(), "deletions": Counter()}
    for ref, hyp, chunks in zip(refs, hyps, _alignments(refs, hyps)):
        rw, hw = ref.split(), hyp.split()
        for ch in chunks:
            r, h = rw[ch.ref_start_idx : ch.ref_end_idx], hw[ch.hyp_start_idx : ch.hyp_end_idx]
            if ch.type == "substitute":
                found["substitutions"].update(a + SUBSTITUTION_ARROW + b for a, b in zip(r, h))
            elif ch.type == "insert":
                found["insertions"].update(h)
            elif ch.type == "delete":
                found["deletions"].update(r)
    return {kind: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:k] for kind, c in found.items()}


def errors_by_frequency(
    refs: Sequence[str], hyps: Sequence[str], counts: Counter[str], edges: Sequence[int] = FREQUENCY_EDGES,
) -> tuple[list[dict], int]:
    """Reference words grouped by how often each occurs in `counts` (say, the training transcripts).

    Returns one row per group, `{"group": "10-99", "words": N, "errors": E}` (E: the group's words that were
    substituted or deleted), and the insertions, which belong to no reference word: the WER is
    (sum of E + insertions) / sum of N.
    """
    refs, hyps = _normalized(refs, hyps)
    edges = sorted(edges)
    labels = [f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    rows = [{"group": label, "words": 0, "errors": 0} for label in labels]
    insertions = 0
    for ref, chunks in zip(refs, _alignments(refs, hyps)):
        words = ref.split()
        for ch in chunks:
            if ch.type == "insert":
                insertions += ch.hyp_end_idx - ch.hyp_start_idx
                continue
            for word in words[ch.ref_start_idx : ch.ref_end_idx]:
                group = max(bisect.bisect_right(edges, counts[word]) - 1, 0)
                rows[group]["words"] += 1
                rows[group]["errors"] += ch.type != "equal"
    return rows, insertions
