"""tools/build_lm.py: input checks, lexicon format, KenLM discovery, and an end-to-end build.

The end-to-end tests (marked slow) use KenLM's lmplz/build_binary from the cache folder
($ASR_KENLM_DIR or ~/.cache/asr/kenlm); the first run on a machine builds them (about a minute).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "build_lm.py"

TEXT = """The cat sat on the mat.
The cat ate the fish; the dog ate the bone.
It cost $5 at 3 o'clock, said Mr. Smith.
A dog and a cat sat on the log.
The cat sat on the log!
"""


def _load():
    return load_script("build_lm", SCRIPT)


build_lm = _load()


def test_missing_empty_and_binary_text(tmp_path):
    with pytest.raises(build_lm.BuildLMError, match="not found"):
        build_lm.build_lm(tmp_path / "nope.txt", tmp_path / "out")
    (tmp_path / "blank.txt").write_text("\n  \n!!! ... ---\n")
    with pytest.raises(build_lm.BuildLMError, match="no words after normalization"):
        build_lm.build_lm(tmp_path / "blank.txt", tmp_path / "out")
    (tmp_path / "bin.txt").write_bytes(b"caf\xe9 \xff\xfe\n")
    with pytest.raises(build_lm.BuildLMError, match="not UTF-8"):
        build_lm.build_lm(tmp_path / "bin.txt", tmp_path / "out")
    with pytest.raises(build_lm.BuildLMError, match="is not a file"):
        build_lm.build_lm(tmp_path, tmp_path / "out")


def test_option_checks(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    for order in (1, 7):
        with pytest.raises(build_lm.BuildLMError, match="--order must be between 2 and 6"):
            build_lm.build_lm(tmp_path / "t.txt", tmp_path / "out", order=order)
    with pytest.raises(build_lm.BuildLMError, match="non-decreasing"):
        build_lm.build_lm(tmp_path / "t.txt", tmp_path / "out", prune=[0, 2, 1])
    with pytest.raises(build_lm.BuildLMError, match="--quantize must be between 1 and 25 bits"):
        build_lm.build_lm(tmp_path / "t.txt", tmp_path / "out", quantize=0)


def test_cli_reports_errors_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing.txt"), str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: text file")


def test_normalize_corpus_and_lexicon(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT + "\n\n")
    sentences, counts = build_lm.normalize_corpus(tmp_path / "t.txt", tmp_path / "norm.txt")
    lines = (tmp_path / "norm.txt").read_text().splitlines()
    assert sentences == len(lines) == 5
    assert lines[2] == "it cost five dollars at three o'clock said mr smith"
    assert counts["the"] == 9 and counts["o'clock"] == 1 and "mr." not in counts
    build_lm.write_lexicon(["a", "cat", "o'clock"], tmp_path / "lexicon.txt")
    assert (tmp_path / "lexicon.txt").read_text() == "a a |\ncat c a t |\no'clock o ' c l o c k |\n"
    with pytest.raises(build_lm.BuildLMError, match="outside the tokenizer's alphabet"):
        build_lm.write_lexicon(["Cat"], tmp_path / "bad.txt")


def test_a_manifest_is_read_as_its_transcripts(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"audio_filepath": "a.wav", "duration": 1.0, "text": "the cat sat"}\n'
                                      '{"audio_filepath": "b.wav", "duration": 2.0, "text": "on the mat"}\n')
    sentences, counts = build_lm.normalize_corpus(tmp_path / "m.jsonl", tmp_path / "norm.txt")
    assert (tmp_path / "norm.txt").read_text() == "the cat sat\non the mat\n" and counts["the"] == 2
    (tmp_path / "bad.jsonl").write_text('{"audio_filepath": "a.wav", "text": "no duration"}\n')
    with pytest.raises(build_lm.BuildLMError, match="bad.jsonl:1: missing required key 'duration'"):
        build_lm.normalize_corpus(tmp_path / "bad.jsonl", tmp_path / "norm.txt")


def _fake_programs(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in ("lmplz", "build_binary"):
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
        (folder / name).chmod(0o755)


def test_find_kenlm_order(tmp_path, monkeypatch):
    """The cache folder ($ASR_KENLM_DIR) first; PATH only when the variable is unset; else a build."""
    _fake_programs(tmp_path / "cache" / "bin")
    _fake_programs(tmp_path / "path")
    monkeypatch.setenv("PATH", f"{tmp_path / 'path'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ASR_KENLM_DIR", str(tmp_path / "cache"))
    assert build_lm.find_kenlm(build=False)["lmplz"] == tmp_path / "cache" / "bin" / "lmplz"
    monkeypatch.setenv("ASR_KENLM_DIR", str(tmp_path / "empty"))
    with pytest.raises(build_lm.BuildLMError, match="not found"):
        build_lm.find_kenlm(build=False)
    monkeypatch.delenv("ASR_KENLM_DIR")
    monkeypatch.setattr(build_lm, "DEFAULT_KENLM_DIR", tmp_path / "default")
    assert build_lm.find_kenlm(build=False)["build_binary"] == tmp_path / "path" / "build_binary"


def test_build_needs_cmake(tmp_path, monkeypatch):
    monkeypatch.setattr(build_lm.shutil, "which", lambda name: None if name == "cmake" else "/usr/bin/" + name)
    with pytest.raises(build_lm.BuildLMError, match="building KenLM needs cmake.*tools/install.sh dev"):
        build_lm.build_kenlm(tmp_path / "cache")


def test_kenlm_error_message():
    stderr = ("=== 2/5 Calculating and sorting adjusted counts ===\n"
              "/src/lm/builder/adjust_counts.cc:49 in void f() threw BadDiscountException because `s.n[j] == 0'.\n"
              "Could not calculate Kneser-Ney discounts for 1-grams.\nTry deduplicating the input.\n\nERROR\n")
    expected = "Could not calculate Kneser-Ney discounts for 1-grams. Try deduplicating the input."
    assert build_lm._kenlm_message(stderr) == expected
    assert build_lm._kenlm_message("just one line\n") == "just one line"


# ------------------------------------------------------------------ end to end with KenLM

def _arpa_counts(arpa: Path) -> dict[int, int]:
    return {int(n): int(c) for n, c in re.findall(r"^ngram (\d+)=(\d+)$", arpa.read_text(), re.M)}


def _sentence_score(lm_path: Path, words: list[str]) -> float:
    """Total LM score of a sentence via flashlight-text's KenLM (what the beam decoder uses)."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    vocab = sorted(set(words)) + ["<unk>"]
    lm = KenLM(str(lm_path), Dictionary(vocab))
    state, total = lm.start(False), 0.0
    for w in words:
        state, s = lm.score(state, vocab.index(w))
        total += s
    return total + lm.finish(state)[1]


@pytest.mark.slow
def test_end_to_end(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT)
    out = tmp_path / "lm"
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "text.txt"), str(out), "--order", "3",
                             "--discount_fallback", "--memory", "64M"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "5 sentences, 41 words, vocabulary 22" in result.stdout
    arpa, binary, lexicon = out / "lm.arpa", out / "lm.bin", out / "lexicon.txt"
    assert arpa.read_text().startswith("\\data\\") and binary.stat().st_size > 0
    counts = _arpa_counts(arpa)
    assert sorted(counts) == [1, 2, 3] and counts[1] == 22 + 3  # the words plus <s>, </s>, <unk>
    section = arpa.read_text().split("\\1-grams:")[1].split("\\2-grams:")[0]
    unigrams = {line.split("\t")[1] for line in section.splitlines() if "\t" in line}
    assert {"five", "dollars", "three", "o'clock", "mr", "smith", "<s>", "</s>", "<unk>"} <= unigrams
    assert not any(c.isupper() or c in ".,;!$" for w in unigrams - {"<s>", "</s>", "<unk>"} for c in w)
    lines = lexicon.read_text().splitlines()
    assert len(lines) == 22 and lines == sorted(lines)
    assert "cat c a t |" in lines and "o'clock o ' c l o c k |" in lines
    assert {line.split()[0] for line in lines} == unigrams - {"<s>", "</s>", "<unk>"}
    # the binary holds the same model as the ARPA file, and the model prefers what it saw
    seen, shuffled = "the cat sat on the mat".split(), "mat the on sat cat the".split()
    assert _sentence_score(binary, seen) == pytest.approx(_sentence_score(arpa, seen), abs=1e-4)
    assert _sentence_score(binary, seen) > _sentence_score(binary, shuffled) + 1.0


@pytest.mark.slow
def test_pruning_and_discount_errors(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT)
    full = build_lm.build_lm(tmp_path / "text.txt", tmp_path / "full", order=3, discount_fallback=True, memory="64M")
    pruned = build_lm.build_lm(tmp_path / "text.txt", tmp_path / "pruned", order=3, prune=[0, 1],
                               discount_fallback=True, memory="64M")
    full_counts, pruned_counts = _arpa_counts(full.arpa), _arpa_counts(pruned.arpa)
    assert pruned_counts[1] == full_counts[1]  # unigrams are kept
    assert pruned_counts[2] < full_counts[2] and pruned_counts[3] < full_counts[3]
    # a tiny text defeats Kneser-Ney discount estimation: the error says what to do
    with pytest.raises(build_lm.BuildLMError, match="lmplz failed: .*--discount_fallback"):
        build_lm.build_lm(tmp_path / "text.txt", tmp_path / "tiny", order=3, memory="64M")


@pytest.mark.slow
def test_quantized_trie_is_smaller_and_ranks_the_same(tmp_path):
    import random

    rng = random.Random(0)  # 3000 sentences over 300 words: enough n-grams for the trie to pay off
    vocab = [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(300)]
    text = tmp_path / "text.txt"
    text.write_text(TEXT + "".join(" ".join(rng.choices(vocab, k=8)) + "\n" for _ in range(3000)))
    plain = build_lm.build_lm(text, tmp_path / "plain", order=3, discount_fallback=True, memory="64M")
    small = build_lm.build_lm(text, tmp_path / "q8", order=3, discount_fallback=True, memory="64M", quantize=8)
    assert small.binary.stat().st_size < plain.binary.stat().st_size
    seen, shuffled = "the cat sat on the mat".split(), "mat the on sat cat the".split()
    assert _sentence_score(small.binary, seen) == pytest.approx(_sentence_score(plain.binary, seen), rel=0.25)
    assert _sentence_score(small.binary, seen) > _sentence_score(small.binary, shuffled) + 1.0
