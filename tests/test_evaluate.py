"""Batch evaluation end to end with a tiny model that has memorized the fixture utterances."""

import json
import os
import subprocess
import sys

import pytest

from asr.data import read_manifest, write_manifest

SUMMARY_KEYS = {"wer", "cer", "num_utterances", "audio_seconds", "wall_seconds", "rtf", "model", "decoder"}


def run(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "asr.evaluate", *map(str, args)], capture_output=True, text=True, env=env)


def test_report_files(tiny_model, speech_dir, tmp_path):
    result = run(f"manifest={speech_dir / 'manifest.jsonl'}", f"model={tiny_model}", f"report_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["num_utterances"] == 6 and summary["decoder"] == "greedy"  # decoder=auto with a model of your own
    assert summary["wer"] < 0.05 and summary["rtf"] > 0
    rows = [json.loads(line) for line in (tmp_path / "utterances.jsonl").read_text().splitlines()]
    assert [set(r) for r in rows] == [{"audio_filepath", "ref", "hyp", "wer"}] * 6
    assert [r["ref"] for r in rows] == [e.text for e in read_manifest(speech_dir / "manifest.jsonl")]
    report = (tmp_path / "report.md").read_text()
    assert f"{summary['wer']:.2%}" in report and "Most frequent substitutions" in report
    voices = {e.extra["voice"] for e in read_manifest(speech_dir / "manifest.jsonl")}
    assert set(summary["by_voice"]) == voices and sum(g["num_utterances"] for g in summary["by_voice"].values()) == 6
    assert "## By voice" in report and "by_speaker" not in summary  # the fixture has no speaker field


def test_errors_are_counted_against_the_reference(tiny_model, speech_dir, tmp_path):
    """Swap two references: the report must show those utterances, and their speaker, as wrong."""
    entries = read_manifest(speech_dir / "manifest.jsonl")
    entries[0].text, entries[1].text = entries[1].text, entries[0].text
    for i, e in enumerate(entries[:-1]):  # the last utterance has no speaker: left out of by_speaker
        e.extra["speaker"] = "swapped" if i < 2 else "kept"
    write_manifest(speech_dir / "swapped.jsonl", entries)
    result = run(f"manifest={speech_dir / 'swapped.jsonl'}", f"model={tiny_model}", f"report_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "utterances.jsonl").read_text().splitlines()]
    assert rows[0]["wer"] > 0.5 and rows[1]["wer"] > 0.5 and max(r["wer"] for r in rows[2:]) < 0.2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["wer"] > 0.2
    assert list(summary["by_speaker"]) == ["swapped", "kept"]  # worst first
    assert [g["num_utterances"] for g in summary["by_speaker"].values()] == [2, 3]
    assert summary["by_speaker"]["swapped"]["wer"] > 0.5 and summary["by_speaker"]["kept"]["wer"] < 0.2


@pytest.mark.slow
def test_beam_search_with_lm(tiny_model, speech_dir, tmp_path):
    """Beam search + a KenLM model and lexicon built by tools/build_lm.py from the transcripts."""
    text = tmp_path / "text.txt"
    text.write_text("".join(e.text + "\n" for e in read_manifest(speech_dir / "manifest.jsonl")))
    build = subprocess.run([sys.executable, "tools/build_lm.py", text, tmp_path / "lm", "--order", "3", "--discount_fallback"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    result = run(f"manifest={speech_dir / 'manifest.jsonl'}", f"model={tiny_model}", f"report_dir={tmp_path / 'r'}",
                 "decoder=beam", f"decoder.lm={tmp_path / 'lm' / 'lm.bin'}", f"decoder.lexicon={tmp_path / 'lm' / 'lexicon.txt'}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["decoder"] == "beam" and summary["wer"] < 0.05


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "no manifest"),
        (["manifest=/nope.jsonl"], "/nope.jsonl: no such manifest file"),
        (["wav/x.wav"], "takes key=value overrides only"),
    ],
)
def test_bad_inputs(tiny_model, tmp_path, args, message):
    result = run(*args, f"model={tiny_model}", f"report_dir={tmp_path}")
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_missing_audio_names_the_file(tiny_model, tmp_path):
    (tmp_path / "m.jsonl").write_text('{"audio_filepath": "gone.wav", "duration": 1.0, "text": "a"}\n')
    result = run(f"manifest={tmp_path / 'm.jsonl'}", f"model={tiny_model}", f"report_dir={tmp_path / 'r'}")
    assert result.returncode == 1 and "gone.wav: no such file" in result.stderr and "Traceback" not in result.stderr
