"""Transcription end to end with a tiny model that has memorized the espeak-ng fixture utterances."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio, save_audio
from asr.data import read_manifest
from asr.config import load_config
from asr.decoding import WordTiming
from asr.metrics import utterance_wer
from asr.transcribe import Segment, batches, segments_of, subtitle_cues, timestamp

SRT_TIME = r"\d\d:\d\d:\d\d,\d\d\d"


def run(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "asr.transcribe", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)


def test_prints_the_transcript(tiny_model, speech_wav):
    result = run(speech_wav, f"model={tiny_model}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the cat sat on the mat\n"


def test_info_shows_provenance(tiny_model):
    result = run("--info", f"model={tiny_model}")
    assert result.returncode == 0 and "dev_wer:" in result.stdout and "steps:" in result.stdout
    assert result.stdout.splitlines()[-1] == "decoder: greedy"  # decoder=auto: the bundled LM is not for a model of your own


def test_auto_decoder_searches_with_an_lm_you_name(tiny_model, tiny_lm, speech_wav):
    lm = [f"decoder.lm={tiny_lm / 'lm.bin'}", f"decoder.lexicon={tiny_lm / 'lexicon.txt'}"]
    info = run("--info", f"model={tiny_model}", *lm)
    assert info.returncode == 0, info.stderr
    assert info.stdout.splitlines()[-1].startswith(f"decoder: beam; lm {tiny_lm / 'lm.bin'}, lexicon {tiny_lm / 'lexicon.txt'}")
    result = run(speech_wav, f"model={tiny_model}", *lm)
    assert result.returncode == 0 and result.stdout == "the cat sat on the mat\n", result.stderr


@pytest.fixture(scope="module")
def long_recording(speech_dir, tmp_path_factory):
    """The six fixture utterances one after another with 1 s of silence between them, and where each lies."""
    entries = read_manifest(speech_dir / "manifest.jsonl")
    gap = torch.zeros(16000)
    pieces, spans, t = [gap], [], 1.0
    for e in entries:
        wave = load_audio(e.audio_filepath)
        pieces += [wave, gap]
        spans.append((t, t + len(wave) / 16000, e.text))
        t += len(wave) / 16000 + 1.0
    path = tmp_path_factory.mktemp("long") / "long.wav"
    save_audio(path, torch.cat(pieces))
    return path, spans


def test_json_words_lie_inside_the_known_utterance_boundaries(tiny_model, long_recording, tmp_path):
    """Six utterances separated by 1 s silences, cut into segments of at most 6 s and stitched back:
    every word's timestamps must fall inside its own utterance's known span."""
    path, spans = long_recording
    result = run(path, f"model={tiny_model}", "output.format=json", f"output.dir={tmp_path}", "segment.max_seconds=6")
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "long.json").read_text())
    words = out["words"]
    assert [w["word"] for w in words] == out["text"].split()
    assert abs(out["duration"] - (spans[-1][1] + 1.0)) < 1e-3
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(words, words[1:]))
    assert all(0.0 <= w["confidence"] <= 1.0 and w["start"] < w["end"] for w in words)
    for start, end, text in spans:
        inside = [w for w in words if start - 0.1 <= w["start"] and w["end"] <= end + 0.1]
        assert utterance_wer(text, " ".join(w["word"] for w in inside))[0] <= 0.5, (text, inside)
    assert sum(len(t.split()) for _, _, t in spans) - 3 <= len(words)
    outside = [w for w in words if not any(s - 0.1 <= w["start"] and w["end"] <= e + 0.1 for s, e, _ in spans)]
    assert not outside  # no word is placed in a silence between utterances


def test_srt_and_vtt_parse(tiny_model, long_recording, tmp_path):
    path, spans = long_recording
    for fmt in ("srt", "vtt"):
        result = run(path, f"model={tiny_model}", f"output.format={fmt}", f"output.dir={tmp_path}")
        assert result.returncode == 0, result.stderr
    srt = (tmp_path / "long.srt").read_text().strip().split("\n\n")
    cue_words = []
    full = run(path, f"model={tiny_model}").stdout.split()
    for n, block in enumerate(srt, 1):
        lines = block.splitlines()
        assert lines[0] == str(n)
        m = re.fullmatch(rf"({SRT_TIME}) --> ({SRT_TIME})", lines[1])
        assert m and m.group(1) < m.group(2)
        cue_words += " ".join(lines[2:]).split()
    assert cue_words == full  # every word, in order, in exactly one cue
    vtt = (tmp_path / "long.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and re.search(r"\d\d:\d\d:\d\d\.\d\d\d --> ", vtt)


def test_folder_to_jsonl_with_a_bad_file(tiny_model, speech_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("utt00", "utt01"):
        (folder / f"{name}.wav").write_bytes((speech_dir / "wav" / f"{name}.wav").read_bytes())
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    result = run(folder, f"model={tiny_model}", "output.format=jsonl")
    assert result.returncode == 1
    assert re.search(r"error: .*broken.wav: not a readable audio file", result.stderr)
    assert "1 of 3 files failed" in result.stderr and "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(os.path.basename(x["audio_filepath"]), x["text"]) for x in lines] == [  # input (sorted) order
        ("utt00.wav", "the cat sat on the mat"), ("utt01.wav", "she sells sea shells by the sea shore")]


def test_manifest_input_and_txt_files(tiny_model, speech_dir, tmp_path):
    result = run(speech_dir / "manifest.jsonl", f"model={tiny_model}", f"output.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "utt02.txt").read_text() == "a quick brown fox jumps over the lazy dog\n"
    # many files to stdout: path<TAB>text, in input order although batches are sorted by length
    result = run(speech_dir / "manifest.jsonl", f"model={tiny_model}", "batch_seconds=4")
    names = [os.path.basename(line.split("\t")[0]) for line in result.stdout.splitlines()]
    assert result.returncode == 0 and names == [f"utt{i:02d}.wav" for i in range(6)]


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.wav"], "missing.wav: no such file"),
        (["model=/nope/model.pt"], "/nope/model.pt: no such model bundle"),
        (["output.format=docx"], "output.format must be one of"),
        ([], "no input"),
    ],
)
def test_bad_input_one_line_errors(tiny_model, args, message):
    result = run(*args, *([] if any(a.startswith("model=") for a in args) else [f"model={tiny_model}"]))
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_long_recording_is_cut_at_pauses(tmp_path):
    """3 minutes read in 30 s blocks: one segment per stretch of speech, padded, never longer than max_seconds."""
    rng = np.random.default_rng(0)
    sr = 16000
    pieces = []
    for _ in range(60):  # 2.2 s of "speech" (noise bursts) + 0.8 s of silence, repeated
        pieces += [0.3 * rng.standard_normal(int(2.2 * sr)), np.zeros(int(0.8 * sr))]
    pieces.append(0.3 * rng.standard_normal(16 * sr))  # 16 s without a pause at the end
    audio = np.concatenate(pieces).astype(np.float32)
    sf.write(tmp_path / "long.flac", audio, sr)
    cfg = load_config("transcribe", ["segment.max_seconds=7", "segment.block_seconds=30", "segment.padding_seconds=0.2"])
    segs = list(segments_of(tmp_path / "long.flac", 0, cfg))
    spans = [(s.start, s.start + len(s.wave) / sr) for s in segs]
    assert all(e - s <= 7 for s, e in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # in order, no overlap
    for k, (s, e) in enumerate(spans[:60]):  # each burst alone, with about 0.2 s of context either side
        assert abs(s - (3 * k - 0.2 * (k > 0))) < 0.05 and abs(e - (3 * k + 2.4)) < 0.05, (k, s, e)
    tail = spans[60:]  # 16.2 s without a pause: cut in the quieter second half of each 7 s window
    assert 3 <= len(tail) <= 5 and abs(tail[0][0] - 179.8) < 0.05 and abs(tail[-1][1] - len(audio) / sr) < 1e-6
    assert all(a[1] == b[0] for a, b in zip(tail, tail[1:])) and all(e - s >= 3.5 for s, e in tail[:-1])


def test_subtitle_helpers():
    assert timestamp(3725.5, ",") == "01:02:05,500"
    words = [WordTiming(w, i, i + 0.5, 1.0) for i, w in enumerate("one two three four".split())]
    assert subtitle_cues(words, max_chars=9, max_seconds=10, max_gap=5) == [(0, 1.5, "one two"), (2, 2.5, "three"), (3, 3.5, "four")]
    assert subtitle_cues(words, max_chars=99, max_seconds=10, max_gap=0.4) == [(i, i + 0.5, w.word) for i, w in enumerate(words)]


def test_batches_sort_by_length_within_a_pool():
    segs = [Segment(i, 0.0, torch.zeros(int(d * 16000))) for i, d in enumerate([1, 9, 1, 9])]
    sources = lambda bs: [[s.source for s in b] for b in bs]  # noqa: E731
    assert sources(batches(iter(segs), batch_seconds=18, pool_seconds=100)) == [[0, 2], [1, 3]]
    assert sources(batches(iter(segs), batch_seconds=18, pool_seconds=1)) == [[0], [1], [2], [3]]  # pools of one


def test_lineage_of_an_older_bundle_without_creation_time():
    from asr.transcribe import lineage_summary

    start = {"bundle": "b.pt", "steps": 5, "train_manifest": "t2.jsonl",
             "init_from": {"bundle": "a.pt", "created": "2026-01-02T03:04:05+00:00", "steps": 9, "epoch": 1}}
    assert lineage_summary(start) == "b.pt (5 steps; trained on t2.jsonl) <- a.pt of 2026-01-02 03:04 (9 steps, 1 epochs; trained on ?)"


# The Python API: asr.load_model(...).transcribe(...), in this process.


@pytest.fixture(scope="module")
def api_model(tiny_model):
    import asr

    return asr.load_model(tiny_model, device="cpu")


def test_api_transcribes_a_file_and_an_array_at_any_rate(api_model, speech_wav):
    import librosa

    t = api_model.transcribe(speech_wav)
    assert t.text == "the cat sat on the mat" and t.path == speech_wav and t.error is None
    assert [w.word for w in t.words] == t.text.split() and abs(t.duration - sf.info(speech_wav).duration) < 1e-6
    pcm, sr = sf.read(speech_wav, dtype="int16")
    assert api_model.transcribe(pcm, sample_rate=sr).text == t.text  # int16 PCM
    wave = pcm.astype(np.float32) / 32768
    at_48k = librosa.resample(wave, orig_sr=sr, target_sr=48000)
    from_array = api_model.transcribe(torch.from_numpy(at_48k), sample_rate=48000)
    assert from_array.text == t.text and from_array.path is None and abs(from_array.duration - t.duration) < 1e-3
    assert from_array.to_json()["audio_filepath"] is None


def test_api_array_of_a_long_recording_matches_the_file(api_model, long_recording):
    """A waveform in memory is cut and stitched as its file is: the same words at the same times."""
    path, _ = long_recording
    short_segments = ["segment.max_seconds=6"]
    import asr

    model = asr.load_model(api_model.bundle.path, device="cpu", overrides=short_segments)
    from_file, from_array = model.transcribe(path), model.transcribe(load_audio(path))
    assert from_file.text and from_array.to_json() == {**from_file.to_json(), "audio_filepath": None}
    assert len(from_file.texts) > 1  # it was cut into segments


def test_api_many_files_with_a_bad_one(api_model, speech_dir, tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    wavs = [speech_dir / "wav" / f"utt0{i}.wav" for i in range(3)]
    out = api_model.transcribe_files([wavs[0], broken, *wavs[1:]])
    assert [t.text for t in out] == ["the cat sat on the mat", "", "she sells sea shells by the sea shore",
                                     "a quick brown fox jumps over the lazy dog"]
    assert [t.error is None for t in out] == [True, False, True, True] and "not a readable audio file" in out[1].error
    assert "broken.wav: not a readable audio file" in capsys.readouterr().err


@pytest.mark.parametrize("audio,kwargs,message", [
    (np.zeros((2, 16000), np.float32), {}, "expected a 1-D mono waveform, got shape (2, 16000)"),
    (np.array([0.0, np.nan], np.float32), {}, "contains NaN or infinite samples"),
    (np.zeros(0, np.float32), {}, "contains no audio samples"),
    (np.zeros(16000, np.uint8), {}, "samples must be float, int16 or int32"),
    ([0.0] * 16000, {}, "expected a numpy array or torch tensor"),
    (np.zeros(16000, np.float32), {"sample_rate": 0}, "sample_rate must be a positive integer"),
])
def test_api_bad_arrays_are_one_line_errors(api_model, audio, kwargs, message):
    from asr.audio import AudioError

    with pytest.raises(AudioError, match=re.escape(message)) as err:
        api_model.transcribe(audio, **kwargs)
    assert str(err.value).startswith("audio array: ")


def test_api_bad_options(tiny_model, tmp_path, capsys):
    import asr
    from asr.audio import AudioError
    from asr.bundle import BundleError
    from asr.config import UsageError

    with pytest.raises(BundleError, match="no such model bundle"):
        asr.load_model(tmp_path / "none.pt")
    with pytest.raises(UsageError, match="decoder"):
        asr.load_model(tiny_model, decoder="nonsense")
    with pytest.raises(AudioError, match="missing.wav: no such file"):
        asr.load_model(tiny_model).transcribe(tmp_path / "missing.wav")
    assert capsys.readouterr().err == ""  # raised, not also printed


def test_import_asr_loads_the_api_only_when_asked():
    code = ("import sys, asr, asr.audio; assert 'asr.transcribe' not in sys.modules; "
            "asr.load_model; assert 'asr.transcribe' in sys.modules; print(asr.Transcriber.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "Transcriber\n", result.stderr
