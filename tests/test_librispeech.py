"""The LibriSpeech recipe: manifests from the standard layout (a fake tree of espeak-ng FLACs) and the
resumable, checksummed download (against a local HTTP server with Range support)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import soundfile as sf
from conftest import load_script, synthesize

from asr.config import UsageError
from asr.data import read_manifest

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "librispeech"


prepare = load_script("librispeech_prepare", RECIPE / "prepare.py")
download = load_script("librispeech_download", RECIPE / "download.py")

# subset → {utterance id: transcript as written in LibriSpeech}; None: the line has no audio file
TREE = {
    "dev-clean": {
        "1272-128104-0000": "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES",
        "1272-128104-0001": "NOR IS MISTER QUILTER'S MANNER LESS INTERESTING",
        "1272-128104-0002": None,
        "2277-149896-0000": "HE WAS 2 YEARS OLD",
        "2277-149896-0001": "--",
    },
    "train-clean-100": {"19-198-0000": "NORTHANGER ABBEY"},
    "train-clean-360": {"14-208-0000": "CHAPTER ONE"},
    "train-other-500": {"20-205-0000": "THE GREAT GATSBY"},
}


@pytest.fixture(scope="module")
def libri_tree(tmp_path_factory) -> Path:
    """data/download/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac + .trans.txt"""
    data = tmp_path_factory.mktemp("libri")
    for subset, utts in TREE.items():
        for uid, text in utts.items():
            spk, chapter, _ = uid.split("-")
            folder = data / "download" / "LibriSpeech" / subset / spk / chapter
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / f"{spk}-{chapter}.trans.txt").open("a") as f:
                f.write(f"{uid} {text or 'THIS LINE HAS NO AUDIO'}\n")
            if text is not None:
                synthesize(text.lower() if text != "--" else "silence", folder / f"{uid}.flac", speed=260)
    return data


def test_prepare_builds_manifests_from_the_layout(libri_tree, capsys):
    argv = [f"corpus_dir={libri_tree / 'download' / 'LibriSpeech'}", f"out_dir={libri_tree}", "jobs=2"]
    assert prepare.main(argv) == 0
    out = capsys.readouterr().out
    assert "1272-128104-0002.flac: no such file" in out and "2277-149896-0001.flac: empty transcript" in out
    assert "dev-other: not found" in out

    dev = read_manifest(libri_tree / "dev-clean.jsonl", check_files=True)
    assert [Path(e.audio_filepath).name for e in dev] == ["1272-128104-0000.flac", "1272-128104-0001.flac",
                                                          "2277-149896-0000.flac"]
    assert [e.text for e in dev] == ["mister quilter is the apostle of the middle classes",
                                     "nor is mister quilter's manner less interesting", "he was two years old"]
    assert [e.extra["speaker"] for e in dev] == ["1272", "1272", "2277"]
    for e in dev:
        assert abs(e.duration - sf.info(e.audio_filepath).duration) < 1e-3
    first = json.loads((libri_tree / "dev-clean.jsonl").read_text().splitlines()[0])
    assert first["audio_filepath"] == "download/LibriSpeech/dev-clean/1272/128104/1272-128104-0000.flac"

    train = read_manifest(libri_tree / "train-960.jsonl", check_files=True)
    assert [e.extra["speaker"] for e in train] == ["19", "14", "20"]

    assert prepare.main(argv + ["strict=true"]) == 1  # skipped utterances fail a strict run


def test_prepare_reports_missing_parts_and_bad_folders(libri_tree, tmp_path, capsys):
    corpus = libri_tree / "download" / "LibriSpeech"
    assert prepare.main([f"corpus_dir={corpus}", f"out_dir={tmp_path}", "subsets=[train-clean-100]"]) == 0
    assert "train-960: not written, missing train-clean-360, train-other-500" in capsys.readouterr().out
    assert not (tmp_path / "train-960.jsonl").exists()
    with pytest.raises(UsageError, match="is not a folder"):
        prepare.main([f"corpus_dir={tmp_path / 'nowhere'}", f"out_dir={tmp_path}"])
    with pytest.raises(UsageError, match="no subset"):
        prepare.main([f"corpus_dir={corpus}", f"out_dir={tmp_path}", "subsets=[dev-other]"])


@pytest.mark.slow
def test_run_sh_stages_1_to_5(libri_tree, tmp_path):
    """Manifests, the LM of train-960's transcripts, 2 training steps of a tiny model, LM tuning and evaluation of
    the dev/test sets that are there (dev-clean only), greedy and beam."""
    data, exp = tmp_path / "data", tmp_path / "exp"
    train_args = ("model.hidden_size=32 trainer.max_steps=2 trainer.val_every=2 trainer.progress=false "
                  "trainer.num_threads=1 data.num_workers=0 data.max_batch_seconds=30 data.min_duration=0.1")
    cmd = ["bash", str(RECIPE / "run.sh"), "--stage", "1", "--dl-dir", str(libri_tree / "download"),
           "--data-dir", str(data), "--exp-dir", str(exp), "--model", "tiny", "--jobs", "1",
           "--lm-args", "--discount_fallback", "--lm-weights", "1", "--word-scores", "0", "--train-args", train_args]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # run.sh calls `python`: this one
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PATH=path, NGPU="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lexicon = (exp / "lm" / "lexicon.txt").read_text()
    assert "gatsby" in lexicon and "quilter" not in lexicon  # the training transcripts only, not dev-clean's
    assert "no " + str(data / "dev-other.jsonl") + ", skipped" in proc.stdout
    for decoder in ("greedy", "beam"):
        summary = json.loads((exp / "eval" / f"dev-clean-{decoder}" / "summary.json").read_text())
        assert summary["num_utterances"] == 3 and summary["decoder"] == decoder


# ---------------------------------------------------------------------------------------------- download

def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in [("LibriSpeech/README.TXT", "fake"), ("LibriSpeech/dev-clean/1/2/1-2.trans.txt", "1-2-0000 HI")]:
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def test_download_subset_extracts_once(server, tmp_path, monkeypatch, capsys):
    archive = _tarball()
    server.files["/12/dev-clean.tar.gz"] = archive
    monkeypatch.setitem(download.SUBSETS, "dev-clean", ("12", hashlib.md5(archive).hexdigest()))
    mirror = server.url("")
    folder = download.download_subset("dev-clean", tmp_path, mirror, keep_archive=False, retries=1)
    assert (folder / "1" / "2" / "1-2.trans.txt").read_text() == "1-2-0000 HI"
    assert (folder / download.EXTRACTED_MARK).exists() and not (tmp_path / "dev-clean.tar.gz").exists()
    download.download_subset("dev-clean", tmp_path, mirror, keep_archive=False, retries=1)
    assert len(server.requests) == 1 and "already extracted" in capsys.readouterr().out
    with pytest.raises(UsageError, match="unknown subset"):
        download.main(["subsets=[dev-dirty]"])
