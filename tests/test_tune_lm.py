"""tools/tune_lm.py: the LM weight / word score grid on the tiny model with a tiny KenLM model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr.config import UsageError
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
tune_lm = load_script("tune_lm", ROOT / "tools" / "tune_lm.py")

LM_WEIGHTS, WORD_SCORES = [0.0, 20.0], [-40.0, 0.0, 40.0]  # extremes, so that the WER differs across the grid


def tune(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "tune_lm.py"), *map(str, args), "num_threads=1"],
                          capture_output=True, text=True, env=env, timeout=300)


def parse_table(stdout: str) -> dict[tuple[float, float], float]:
    """{(lm_weight, word_score): WER %} from the printed table."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.strip().startswith("lm_weight \\ word_score"))
    scores = [float(x) for x in lines[head].split("word_score", 1)[1].split()]
    table = {}
    for line in lines[head + 1 :]:
        if line.startswith("greedy"):
            break
        weight, *wers = line.split()
        assert len(wers) == len(scores), line
        table.update({(float(weight), s): float(w) for s, w in zip(scores, wers)})
    return table


@pytest.mark.slow
def test_grid_table_and_best_pair(tiny_model, tiny_lm, speech_dir, tmp_path):
    manifest = speech_dir / "manifest.jsonl"
    args = [f"manifest={manifest}", f"model={tiny_model}", f"lm={tiny_lm / 'lm.bin'}",
            f"lexicon={tiny_lm / 'lexicon.txt'}", f"lm_weights={LM_WEIGHTS}".replace(" ", ""),
            f"word_scores={WORD_SCORES}".replace(" ", ""), "beam_size=20", f"cache={tmp_path / 'lp.pt'}",
            f"out={tmp_path / 'grid.json'}"]
    result = tune(*args)
    assert result.returncode == 0, result.stderr
    table = parse_table(result.stdout)
    assert set(table) == {(w, s) for w in LM_WEIGHTS for s in WORD_SCORES}
    assert min(table.values()) < max(table.values())  # the grid matters: the check below can fail

    grid = json.loads((tmp_path / "grid.json").read_text())
    exact = {(g["lm_weight"], g["word_score"]): g["wer"] for g in grid["grid"]}
    assert {k: round(100 * v, 2) for k, v in exact.items()} == table
    best = min(exact, key=exact.get)  # first minimum in grid order, as the tool breaks ties
    assert f"best: lm_weight={best[0]:g} word_score={best[1]:g} WER {exact[best]:.2%}" in result.stdout
    assert (grid["best"]["lm_weight"], grid["best"]["word_score"]) == best
    assert "greedy (no LM): WER 0.00%" in result.stdout and grid["greedy"]["wer"] == 0.0  # the model memorized these

    again = tune(*args)  # the second run reads the cached log-probabilities and prints the same table
    assert again.returncode == 0 and "log-probabilities from" in again.stderr
    assert parse_table(again.stdout) == table


@pytest.mark.parametrize("args,message", [
    ([], "no manifest"),
    (["manifest=m.jsonl", "lm=null"], "needs an LM and a lexicon, not null"),
    (["manifest=m.jsonl", "lm=a", "lexicon=b", "lm_weights=[x]"], "lm_weights must be a non-empty list of finite numbers"),
    (["manifest=m.jsonl", "lm=a", "lexicon=b", "word_scores=[]"], "word_scores must be a non-empty list"),
    (["manifest=m.jsonl", "lm=a", "lexicon=b", "max_utterances=0"], "max_utterances must be a positive integer"),
    (["manifest=m.jsonl", "decoder=greedy"], "tunes the beam decoder"),
    (["dev.jsonl"], "takes key=value overrides only"),
])
def test_bad_options(args, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        tune_lm.main(args)


def test_usage_error_is_one_line():
    result = tune("manifest=m.jsonl", "lexicon=null")
    assert result.returncode == 2 and result.stderr.startswith("error: tune_lm needs an LM and a lexicon")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_missing_lm_file_is_one_line(tiny_model, speech_dir, tmp_path):
    result = tune(f"manifest={speech_dir / 'manifest.jsonl'}", f"model={tiny_model}", f"lm={tmp_path / 'no.bin'}",
                  f"lexicon={tmp_path / 'no.txt'}")
    assert result.returncode == 1 and "no.bin" in result.stderr and "Traceback" not in result.stderr
