"""tools/make_manifest.py: manifests from a folder of audio + .txt transcripts, or from a TSV."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from asr.data import read_manifest
from conftest import load_script

TOOL = Path(__file__).resolve().parent.parent / "tools" / "make_manifest.py"
make_manifest = load_script("make_manifest", TOOL)


@pytest.fixture
def user_folder(speech_dir, tmp_path) -> Path:
    """Two good utterances (one in a sub-folder), and one of each problem the tool reports."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(speech_dir / "wav" / "utt00.wav", folder / "a.wav")
    (folder / "a.txt").write_text("The cat sat on the mat.\n")
    shutil.copy(speech_dir / "wav" / "utt01.wav", folder / "sub" / "b.wav")
    (folder / "sub" / "b.txt").write_text("She sells 3 sea shells")
    shutil.copy(speech_dir / "wav" / "utt02.wav", folder / "no_transcript.wav")
    shutil.copy(speech_dir / "wav" / "utt03.wav", folder / "empty.wav")
    (folder / "empty.txt").write_text("  ...  \n")
    (folder / "broken.flac").write_bytes(b"this is not audio" * 10)
    (folder / "broken.txt").write_text("hello")
    shutil.copy(speech_dir / "wav" / "utt04.wav", folder / "foreign.wav")
    (folder / "foreign.txt").write_text("Open the door, Søren")
    return folder


def test_folder_to_manifest(user_folder, capsys):
    assert make_manifest.main([str(user_folder)]) == 0
    captured = capsys.readouterr()
    entries = read_manifest(user_folder / "manifest.jsonl", check_files=True)
    assert [(Path(e.audio_filepath).name, e.text) for e in entries] == [
        ("a.wav", "the cat sat on the mat"), ("b.wav", "she sells three sea shells")]
    for e in entries:
        assert abs(e.duration - sf.info(e.audio_filepath).duration) < 1e-3
    assert json.loads((user_folder / "manifest.jsonl").read_text().splitlines()[1])["audio_filepath"] == "sub/b.wav"
    assert "no_transcript.wav: no transcript (no_transcript.txt not found)" in captured.err
    assert "empty.wav: empty transcript after normalization" in captured.err
    assert "unreadable audio:" in captured.err and "broken.flac" in captured.err
    assert "foreign.wav: transcript has letters outside a-z (ø)" in captured.err
    assert "2 utterances" in captured.out and "skipped 4" in captured.out


def test_tsv_to_manifest(speech_dir, tmp_path, capsys):
    tsv = tmp_path / "list.tsv"
    tsv.write_text(f"{speech_dir / 'wav' / 'utt00.wav'}\tThe cat sat.\n"
                   "missing.wav\tnot here\n"
                   "no tab on this line\n")
    out = tmp_path / "out" / "m.jsonl"
    assert make_manifest.main([str(tsv), "-o", str(out)]) == 0
    assert [e.text for e in read_manifest(out, check_files=True)] == ["the cat sat"]
    err = capsys.readouterr().err
    assert "missing.wav: no such file" in err and "list.tsv:3: no TAB" in err


@pytest.mark.parametrize("make_input,message", [
    (lambda p: p / "nowhere", "no such folder or TSV file"),
    (lambda p: p, "no audio files"),
])
def test_bad_inputs_fail_with_one_line(tmp_path, make_input, message):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(TOOL), str(make_input(tmp_path))], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_nothing_usable_writes_nothing(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "x.txt").write_text("hello there")
    with pytest.raises(SystemExit) as exit_info:
        make_manifest.main([str(tmp_path)])
    assert exit_info.value.code == 1 and not (tmp_path / "manifest.jsonl").exists()
