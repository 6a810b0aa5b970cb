"""The Common Voice recipe on a fake release in Common Voice's layout (espeak-ng speech as 48 kHz MP3s):
manifests and FLAC conversion, resuming, the lines it must skip, the archive step, and run.sh's stages."""

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
import torchaudio.functional as AF
from conftest import ROOT, load_script, synthesize

from asr.audio import load_audio
from asr.bundle import load_bundle
from asr.config import UsageError, load_config
from asr.data import ManifestError, read_manifest
from asr.download import DownloadError

RECIPE = ROOT / "recipes" / "commonvoice"
prepare = load_script("commonvoice_prepare", RECIPE / "prepare.py")
download = load_script("commonvoice_download", RECIPE / "download.py")

HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
          "gender", "accents", "variant", "locale", "segment"]  # release 17's columns
OLD_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent", "locale", "segment"]
# split → (client, clip, sentence as written in the .tsv, how the clip is made: speech | None (no file) | "corrupt")
ROWS = {
    "train": [
        ("c1", "common_voice_en_1.mp3", 'The cat sat on the "mat".', "speech"),
        ("c1", "common_voice_en_2.mp3", "She paid $5 for 2 shells", "speech"),
        ("c2", "common_voice_en_3.mp3", "This clip was never recorded", None),
        ("c2", "common_voice_en_4.mp3", "Søren opened the door", "speech"),
        ("c3", "common_voice_en_5.mp3", "A broken recording", "corrupt"),
        ("c3", "common_voice_en_6.mp3", "...", "speech"),
        ("c1", "common_voice_en_1.mp3", "The cat sat on the mat", "speech"),
    ],
    "dev": [("c4", "common_voice_en_7.mp3", "We will meet again tomorrow", "speech")],
    "test": [("c5", "common_voice_en_8.mp3", "Open the door and turn on the light", "speech")],
    "validated": [  # every validated clip: those of the splits, and more
        ("c1", "common_voice_en_1.mp3", 'The cat sat on the "mat".', "speech"),
        ("c4", "common_voice_en_7.mp3", "We will meet again tomorrow", "speech"),        # a dev clip
        ("c4", "common_voice_en_10.mp3", "A second sentence by this speaker", "speech"),  # by the dev speaker
        ("c6", "common_voice_en_11.mp3", "Open the door and turn on the light", "speech"),  # the test sentence
        ("c6", "common_voice_en_12.mp3", "Numbers like seven are easy", "speech"),
    ],
}
SPOKEN = {"common_voice_en_6.mp3": "silence"}  # what espeak-ng says for a sentence with no words


def _mp3(text: str, path: Path) -> None:
    """espeak-ng speech as a 48 kHz mono MP3, the format Common Voice distributes."""
    wav = synthesize(text, path.with_suffix(".wav"), speed=220)
    sf.write(str(path), AF.resample(load_audio(wav), 16000, 48000).numpy(), 48000, format="MP3")
    wav.unlink()


def _write_release(root: Path) -> Path:
    """root/cv-corpus-99.0-2099-01-01/en/: clips/*.mp3, train.tsv, dev.tsv and validated.tsv (release 17's
    columns), test.tsv (an old release's, with "accent"); returns the locale folder."""
    locale = root / "cv-corpus-99.0-2099-01-01" / "en"
    (locale / "clips").mkdir(parents=True)
    for split, rows in ROWS.items():
        header = OLD_HEADER if split == "test" else HEADER
        lines = ["\t".join(header)]
        for client, clip, sentence, kind in rows:
            values = {"client_id": client, "path": clip, "sentence": sentence, "sentence_id": "s" + clip[-5],
                      "up_votes": "2", "down_votes": "0", "age": "twenties" if client != "c2" else "",
                      "gender": "female_feminine", "accents": "England English", "accent": "us", "locale": "en"}
            lines.append("\t".join(values.get(column, "") for column in header))
            target = locale / "clips" / clip
            if kind == "speech" and not target.exists():
                _mp3(SPOKEN.get(clip, sentence.strip('".')), target)
            elif kind == "corrupt":
                target.write_bytes(b"ID3 not really an mp3" * 50)
        if split == "train":
            lines.append("c9\tcommon_voice_en_9.mp3\ttoo few fields")
        (locale / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return locale


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return _write_release(tmp_path_factory.mktemp("cv") / "download")


def test_prepare_converts_clips_and_writes_manifests(release, tmp_path, capsys):
    out = tmp_path / "data"
    argv = [f"corpus_dir={release}", f"out_dir={out}", "jobs=2"]
    assert prepare.main(argv) == 0
    printed = capsys.readouterr().out
    train = read_manifest(out / "train.jsonl", check_files=True)
    assert [(Path(e.audio_filepath).name, e.text) for e in train] == [
        ("common_voice_en_1.flac", "the cat sat on the mat"), ("common_voice_en_2.flac", "she paid five dollars for two shells")]
    assert train[0].extra == {"speaker": "c1", "gender": "female_feminine", "age": "twenties", "accent": "England English"}
    assert json.loads((out / "train.jsonl").read_text().splitlines()[0])["audio_filepath"] == "audio/common_voice_en_1.flac"
    for entry in train:
        info = sf.info(entry.audio_filepath)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        source = sf.info(str(release / "clips" / Path(entry.audio_filepath).with_suffix(".mp3").name))
        assert abs(entry.duration - source.duration) < 0.05 and entry.duration == pytest.approx(info.duration, abs=1e-4)
    skipped = [line for line in printed.splitlines() if line.startswith("  skipped")]
    clips = release / "clips"
    assert [line.split("train.tsv:", 1)[1].split(" (")[0] for line in skipped] == [  # in line order
        f"4: {clips / 'common_voice_en_3.mp3'}: no such file",
        "5: common_voice_en_4.mp3: transcript has letters outside a-z",
        f"6: {clips / 'common_voice_en_5.mp3'}: not a readable audio file",  # (the decoder's reason)
        "7: common_voice_en_6.mp3: empty transcript after normalization",
        "8: clip common_voice_en_1.mp3 listed twice", "9: 3 fields where the header has 13"]
    assert "train: 2 utterances" in printed and "6 skipped" in printed
    test = read_manifest(out / "test.jsonl", check_files=True)
    assert test[0].extra["accent"] == "us" and test[0].text == "open the door and turn on the light"  # old columns
    assert len(read_manifest(out / "dev.jsonl")) == 1

    flac = out / "audio" / "common_voice_en_1.flac"
    before = flac.stat().st_mtime_ns
    manifest = (out / "train.jsonl").read_text()
    flac.with_name("common_voice_en_2.flac").unlink()  # as if a run had stopped before this clip
    assert prepare.main(argv + ["strict=true"]) == 1  # skipped lines fail a strict run; the rest is written
    assert flac.stat().st_mtime_ns == before and (out / "train.jsonl").read_text() == manifest


def test_prepare_makes_a_larger_training_set_from_validated(release, tmp_path, capsys):
    out = tmp_path / "data"
    assert prepare.main([f"corpus_dir={release}", f"out_dir={out}", "validated_train=true"]) == 0
    assert "validated.tsv less 3 clips (1 dev/test clips, 1 by dev/test speakers, 1 of dev/test sentences)" in (
        capsys.readouterr().out)
    train = read_manifest(out / "train_validated.jsonl", check_files=True)
    assert [(Path(e.audio_filepath).name, e.extra["speaker"]) for e in train] == [
        ("common_voice_en_1.flac", "c1"), ("common_voice_en_12.flac", "c6")]
    (release / "validated.tsv").rename(release / "validated.tsv.away")
    try:
        with pytest.raises(UsageError, match="validated_train=true needs validated.tsv"):
            prepare.main([f"corpus_dir={release}", f"out_dir={out}", "validated_train=true"])
    finally:
        (release / "validated.tsv.away").rename(release / "validated.tsv")


def test_prepare_can_keep_the_mp3s(release, tmp_path):
    out = tmp_path / "data"
    assert prepare.main([f"corpus_dir={release}", f"out_dir={out}", "convert=false", "splits=[dev,other]"]) == 0
    dev = read_manifest(out / "dev.jsonl", check_files=True)
    assert dev[0].audio_filepath == str(release / "clips" / "common_voice_en_7.mp3") and not (out / "audio").exists()
    assert len(load_audio(dev[0].audio_filepath)) / 16000 == pytest.approx(dev[0].duration, abs=0.05)


def test_prepare_in_parallel_after_the_caller_used_torch_threads(release, tmp_path):
    """Forked workers inherit the caller's OpenMP pool; without one thread each they hung on their first resample."""
    script = (f"import sys, torch, torchaudio.functional as AF; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
              "from conftest import load_script; torch.set_num_threads(2); AF.resample(torch.randn(480000), 48000, 16000); "
              f"p = load_script('p', {str(RECIPE / 'prepare.py')!r}); "
              f"sys.exit(p.main(['corpus_dir={release}', 'out_dir={tmp_path}', 'jobs=2', 'splits=[dev,test]']))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(read_manifest(tmp_path / "test.jsonl", check_files=True)) == 1


def test_prepare_rejects_what_is_not_a_release(release, tmp_path):
    with pytest.raises(UsageError, match="has no clips/ folder"):
        prepare.main([f"corpus_dir={release.parent}", f"out_dir={tmp_path}"])
    with pytest.raises(UsageError, match="no usable split"):
        prepare.main([f"corpus_dir={release}", f"out_dir={tmp_path}", "splits=[other]"])
    fake = tmp_path / "fake"
    (fake / "clips").mkdir(parents=True)
    (fake / "train.tsv").write_text("file\ttranscript\na.mp3\thello\n")
    with pytest.raises(ManifestError, match=r"train.tsv: not a Common Voice split file \(no path or sentence column"):
        prepare.main([f"corpus_dir={fake}", f"out_dir={tmp_path}"])


def test_the_training_config_composes_with_the_synthetic_keys():
    cv = load_config("train", ["data=commonvoice"])
    synthetic = load_config("train", ["data=synthetic"])
    assert set(cv.data) == set(synthetic.data) and cv.data.train_manifest == "data/commonvoice/train.jsonl"


# ------------------------------------------------------------------------------------------- download

def _archive(tmp_path: Path) -> Path:
    archive = tmp_path / "cv-corpus-99.0-2099-01-01-en.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in [("cv-corpus-99.0-2099-01-01/en/train.tsv", "\t".join(HEADER) + "\n"),
                           ("cv-corpus-99.0-2099-01-01/en/clips/common_voice_en_1.mp3", "")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data.encode()))
    return archive


def test_download_takes_a_local_archive_and_extracts_it_once(tmp_path, capsys):
    archive = _archive(tmp_path)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    dl = tmp_path / "dl"
    with pytest.raises(DownloadError, match="does not match"):
        download.main([f"dl_dir={dl}", f"archive={archive}", "sha256=" + "0" * 64])
    assert download.main([f"dl_dir={dl}", f"archive={archive}", f"sha256={sha}", "keep_archive=false"]) == 0
    assert (dl / "cv-corpus-99.0-2099-01-01" / "en" / "train.tsv").is_file() and archive.exists()  # not ours to delete
    assert download.main([f"dl_dir={dl}", f"archive={archive}"]) == 0
    assert "already extracted" in capsys.readouterr().out
    with pytest.raises(UsageError, match="commonvoice.mozilla.org/datasets"):
        download.main([f"dl_dir={dl}"])


def test_download_fetches_a_signed_link(server, tmp_path, capsys):
    archive = _archive(tmp_path)
    server.files["/bucket/cv-corpus-99.0-2099-01-01-en.tar.gz"] = archive.read_bytes()
    url = server.url("/bucket/cv-corpus-99.0-2099-01-01-en.tar.gz?X-Amz-Signature=secret")
    dl = tmp_path / "dl"
    assert download.main([f"dl_dir={dl}", f"url='{url}'", "keep_archive=false"]) == 0
    printed = capsys.readouterr().out
    assert f"SHA-256 {hashlib.sha256(archive.read_bytes()).hexdigest()} (not checked" in printed
    assert str(dl / "cv-corpus-99.0-2099-01-01" / "en") + ": train.tsv" in printed
    assert not (dl / archive.name).exists() and (dl / f".{archive.name}.extracted").exists()


# ------------------------------------------------------------------------------------------- run.sh

@pytest.mark.slow
def test_run_sh_prepares_trains_tunes_and_evaluates(release, tmp_path):
    """Stages 0-5 on the fake release (already extracted, so stage 0 finds it): a tiny model, 2 steps on the 2 clips of
    train_validated.jsonl."""
    data, exp = tmp_path / "data", tmp_path / "exp"
    train_args = ("model.hidden_size=32 trainer.max_steps=2 trainer.val_every=2 trainer.progress=false "
                  "trainer.num_threads=1 data.num_workers=0 data.speed_factors=[1.0] data.max_batch_seconds=30")
    cmd = ["bash", str(RECIPE / "run.sh"), "--dl-dir", str(release.parent.parent), "--data-dir", str(data),
           "--exp-dir", str(exp), "--model", "tiny", "--jobs", "1", "--train-set", "train_validated",
           "--lm-args", "--discount_fallback",
           "--lm-weights", "1", "--word-scores", "0", "--train-args", train_args]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # run.sh calls `python`: this one
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PATH=path, NGPU="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "already extracted" in proc.stdout
    assert len(read_manifest(data / "train_validated.jsonl", check_files=True)) == 2
    lexicon = (exp / "lm" / "lexicon.txt").read_text()
    assert (exp / "lm" / "lm.bin").is_file() and "numbers" in lexicon and "sat" in lexicon  # train_validated's words
    assert "tomorrow" not in lexicon and "light" not in lexicon  # dev and test sentences stay out of the LM
    assert load_bundle(exp / "best.pt").provenance["train_manifest"] == str(data / "train_validated.jsonl")
    assert (exp / "best.pt").is_file() and json.loads((exp / "tune_lm.json").read_text())["best"]["lm_weight"] == 1
    for split in ("dev", "test"):
        for decoder in ("greedy", "beam"):
            summary = json.loads((exp / "eval" / f"{split}-{decoder}" / "summary.json").read_text())
            assert summary["num_utterances"] == 1 and summary["decoder"] == decoder and "by_accent" in summary


def test_the_benchmark_times_every_step(speech_dir, tmp_path, capsys):
    bench = load_script("bench_commonvoice", ROOT / "tools" / "bench_commonvoice.py")
    assert bench.main([str(speech_dir / "manifest.jsonl"), "--clips", "4", "--jobs", "2", "--work", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for row in ("prepare, convert, 1 job", "prepare, convert, 2 jobs", "prepare, resume", "prepare, keep MP3",
                "read MP3 (1 process)", "read FLAC (1 process)", "2 jobs / 1 job:"):
        assert row in printed, row
    assert len(read_manifest(tmp_path / "out" / "train.jsonl", check_files=True)) == 4
    assert len(list((tmp_path / "cv-corpus-bench" / "en" / "clips").glob("*.mp3"))) == 4


def test_download_rejects_an_archive_that_is_not_a_release(tmp_path):
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("README.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DownloadError, match="did not contain a cv-corpus-\\*/<locale>/clips/ folder"):
        download.main([f"dl_dir={tmp_path / 'dl'}", f"archive={archive}"])
    assert not (tmp_path / "dl" / ".other.tar.gz.extracted").exists()  # a later run tries again
    with pytest.raises(UsageError, match="no such file"):
        download.main([f"dl_dir={tmp_path / 'dl'}", f"archive={tmp_path / 'missing.tar.gz'}"])
