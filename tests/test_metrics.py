"""Metrics against hand-computed values."""

from collections import Counter

import pytest

from asr.metrics import (
    Alignment, align, error_rates, errors_by_frequency, sum_rates, top_errors, utterance_rates, utterance_wer,
)


def test_wer_hand_computed():
    # ref "the cat sat on the mat" (6 words) vs "the bat sat on mat": cat→bat (S), one "the" deleted (D)
    assert utterance_wer("the cat sat on the mat", "the bat sat on mat") == (pytest.approx(2 / 6), 2)
    # an insertion: 1 error over 3 reference words
    assert utterance_wer("a b c", "a b x c") == (pytest.approx(1 / 3), 1)
    # more hypothesis words than reference words: WER above 1
    assert utterance_wer("hi", "oh my god") == (3.0, 3)
    # the corpus WER pools errors and reference words: (2 + 1) / (6 + 3)
    r = error_rates(["the cat sat on the mat", "a b c"], ["the bat sat on mat", "a b x c"])
    assert r.wer == pytest.approx(3 / 9)
    assert (r.substitutions, r.deletions, r.insertions, r.hits, r.ref_words) == (1, 1, 1, 7, 9)
    assert r.word_errors == 3 and r.num_utterances == 2


def test_normalization_applies_to_both_sides():
    assert utterance_wer("Mr. Smith paid $5!", "mr smith paid five dollars") == (0.0, 0)
    assert error_rates(["It's 3 o'clock."], ["its three o'clock"]).wer == pytest.approx(1 / 3)  # it's ≠ its


def test_cer_hand_computed():
    # "abc d" (5 characters, the space counts) vs "abd d": one substitution
    r = error_rates(["abc d"], ["abd d"])
    assert r.cer == pytest.approx(1 / 5) and (r.char_errors, r.ref_chars) == (1, 5)
    # "cat" vs "cart": one insertion over 3 characters; pooled with an exact "dog": 1 / 6
    assert error_rates(["cat", "dog"], ["cart", "dog"]).cer == pytest.approx(1 / 6)


def test_empty_reference_and_hypothesis():
    assert utterance_wer("", "") == (0.0, 0)
    assert utterance_wer("", "uh um") == (1.0, 2)       # no reference words: any output is 100% wrong
    assert utterance_wer("hello world", "") == (1.0, 2)  # everything deleted
    assert utterance_wer("...", "") == (0.0, 0)          # normalizes to an empty reference
    # in a corpus the empty reference's insertions count; its (zero) words add nothing to the denominator
    r = error_rates(["", "a b c d"], ["x y", "a b c d"])
    assert r.wer == pytest.approx(2 / 4) and r.insertions == 2 and r.ref_words == 4
    assert r.cer == pytest.approx(3 / 7)  # "x y" is 3 inserted characters; "a b c d" has 7
    r = error_rates([""], [""])
    assert (r.wer, r.cer, r.ref_words) == (0.0, 0.0, 0)
    assert error_rates([""], ["oops"]).wer == 1.0
    assert error_rates([], []).wer == 0.0


def test_corpus_totals_and_top_errors():
    refs = ["the cat sat on the mat", "the cat ran", "a dog", "", "hello world"]
    hyps = ["the bat sat on the mat", "the bat ran away", "a dog", "um", ""]
    r = error_rates(refs, hyps)
    # S: cat→bat ×2; I: away, um; D: hello, world. Reference words 6 + 3 + 2 + 0 + 2 = 13
    assert (r.substitutions, r.deletions, r.insertions, r.hits, r.ref_words) == (2, 2, 2, 9, 13)
    assert r.wer == pytest.approx(6 / 13)
    # characters: c→b twice, " away" (5) and "um" (2) inserted, "hello world" (11) deleted; 22+11+5+0+11 = 49
    assert r.char_errors == 2 + 7 + 11 and r.ref_chars == 49 and r.cer == pytest.approx(20 / 49)
    top = top_errors(refs, hyps, k=2)
    assert top == {
        "substitutions": [("cat → bat", 2)],
        "insertions": [("away", 1), ("um", 1)],   # equal counts: alphabetical
        "deletions": [("hello", 1), ("world", 1)],
    }
    assert top_errors(["a b c"] * 3, ["x b c", "x b c", "a y c"], k=1)["substitutions"] == [("a → x", 2)]
    assert top_errors(["a"], ["a"]) == {"substitutions": [], "insertions": [], "deletions": []}


def test_align_display():
    a = align("The cat sat on", "the sat on it.")  # delete "cat", insert "it" (2 edits, vs 4 substitutions)
    assert a == Alignment(ref="the cat sat on **", hyp="the *** sat on it", ops="    D          I")
    assert list(a) == ["REF: the cat sat on **", "HYP: the *** sat on it", "         D          I"]
    b = align("the cat ran", "the bat ran away")
    assert str(b) == "REF: the cat ran ****\nHYP: the bat ran away\n         S       I"
    assert list(align("", "")) == ["REF:", "HYP:", ""]


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="sequences"):
        top_errors("a b", "a b")


def test_summed_utterance_rates_equal_the_corpus_rates():
    refs = ["the cat sat on the mat", "a b c", "", "hello world"]
    hyps = ["the bat sat on mat", "a b x c", "noise", "hello world"]
    per = utterance_rates(refs, hyps)
    assert [r.num_utterances for r in per] == [1] * 4 and per[2].wer == 1.0 and per[3].wer == 0.0
    assert sum_rates(per) == error_rates(refs, hyps)
    assert sum_rates(per[:2]) == error_rates(refs[:2], hyps[:2])
    assert sum_rates([]).wer == 0.0 and sum_rates([]).num_utterances == 0


def test_errors_by_training_frequency_hand_computed():
    counts = Counter({"the": 1500, "cat": 40, "sat": 3, "mat": 200})
    refs = ["the cat sat on the mat", "the zebra sat"]
    hyps = ["the bat sat on mat", "the zebra sad extra"]
    rows, insertions = errors_by_frequency(refs, hyps, counts)
    by = {r["group"]: (r["words"], r["errors"]) for r in rows}
    # "on", "zebra": never seen (on: right; zebra: right); "sat" x2 (1-9: one wrong); "cat" (10-99: wrong);
    # "mat" (100-999: right); "the" x3 (1000+: one deleted)
    assert by == {"0": (2, 0), "1-9": (2, 1), "10-99": (1, 1), "100-999": (1, 0), "1000+": (3, 1)}
    assert insertions == 1
    total = error_rates(refs, hyps)
    assert sum(w for w, _ in by.values()) == total.ref_words
    assert sum(e for _, e in by.values()) + insertions == total.word_errors
