"""tools/word_errors.py on an evaluation report and a training manifest."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "word_errors.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_table_of_errors_by_training_frequency(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "duration": 1.0, "text": t}) + "\n"
                             for i, t in enumerate(["The cat sat.", "the cat ran", "a dog"])))
    report = tmp_path / "eval"
    report.mkdir()
    rows = [("the cat sat", "the bat sat"), ("a zebra ran", "a zebra ran ran")]
    (report / "utterances.jsonl").write_text("".join(json.dumps({"audio_filepath": "x.wav", "ref": r, "hyp": h, "wer": 0})
                                                      + "\n" for r, h in rows))
    missing = run(report, "--train", tmp_path / "gone.jsonl")
    assert missing.returncode == 1 and "gone.jsonl: no such manifest file" in missing.stderr
    result = run(report, "--train", train)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # "zebra" never seen (right); the, cat, sat, a, ran seen 1-9 times (cat wrong); one insertion
    assert "| 0 times | 1 | 16.7% | 0.0% | 0.0% |" in lines
    assert "| 1-9 times | 5 | 83.3% | 20.0% | 50.0% |" in lines
    assert "| insertions | - | - | 1 words | 50.0% |" in lines
    assert "WER 33.33% (2 errors in 6 reference words)" in lines


def test_bad_inputs_are_one_line_errors(tmp_path):
    result = run(tmp_path, "--train", tmp_path / "train.jsonl")
    assert result.returncode == 1 and "utterances.jsonl: no such file" in result.stderr
    (tmp_path / "utterances.jsonl").write_text('{"ref": "a"}\n')
    result = run(tmp_path / "utterances.jsonl", "--train", tmp_path / "train.jsonl")
    assert result.returncode == 1 and "utterances.jsonl:1: not a line of asr.evaluate's utterances.jsonl" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "utterances.jsonl").write_text('{"ref": "", "hyp": "a"}\n')
    result = run(tmp_path, "--train", tmp_path / "train.jsonl")
    assert result.returncode == 1 and "utterances.jsonl: no reference words" in result.stderr
