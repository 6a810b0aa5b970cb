import json

import pytest
import torch

from asr.data import (
    BucketBatchSampler, ManifestError, SpeechDataset, Utterance, collate, ctc_min_frames, filter_utterances,
    read_manifest, write_manifest,
)
from asr.text import CharTokenizer


def test_manifest_round_trip_and_relative_paths(speech_dir, tmp_path):
    entries = read_manifest(speech_dir / "manifest.jsonl", check_files=True)
    assert len(entries) == 6 and entries[0].audio_filepath.startswith(str(speech_dir))
    assert entries[0].extra["voice"] == "en-us"
    out = speech_dir / "copy.jsonl"
    write_manifest(out, entries)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["audio_filepath"] == "wav/utt00.wav" and first["voice"] == "en-us"
    assert [e.text for e in read_manifest(out)] == [e.text for e in entries]


@pytest.mark.parametrize(
    "line,problem",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"duration": 1.0, "text": "a"}', "missing required key 'audio_filepath'"),
        ('{"audio_filepath": "a.wav", "duration": "1", "text": "a"}', "'duration' has the wrong type"),
        ('{"audio_filepath": "a.wav", "duration": NaN, "text": "a"}', "'duration' must be a positive number"),
        ('{"audio_filepath": "a.wav", "duration": -2, "text": "a"}', "'duration' must be a positive number"),
        ('{"audio_filepath": "a.wav", "duration": 1, "text": 5}', "'text' has the wrong type"),
    ],
)
def test_bad_manifest_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio_filepath": "ok.wav", "duration": 1.0, "text": "fine"}\n' + line + "\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert f"{path}:2:" in str(err.value) and problem in str(err.value)


def test_missing_empty_and_missing_audio(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest file"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="manifest is empty"):
        read_manifest(tmp_path / "empty.jsonl")
    (tmp_path / "m.jsonl").write_text('{"audio_filepath": "gone.wav", "duration": 1.0, "text": "a"}\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:1: audio file .*gone.wav does not exist"):
        read_manifest(tmp_path / "m.jsonl", check_files=True)


def test_dataset_and_collate(speech_dir):
    tok = CharTokenizer()
    ds = SpeechDataset(read_manifest(speech_dir / "manifest.jsonl"), tok)
    batch = collate([ds[0], ds[2]])
    assert batch["waves"].shape == (2, int(batch["wave_lengths"].max()))
    assert tok.decode(batch["targets"][1, : batch["target_lengths"][1]].tolist()) == ds.entries[2].text
    assert batch["indices"].tolist() == [0, 2]
    assert abs(batch["wave_lengths"][0].item() / 16000 - ds.entries[0].duration) < 1e-3


def test_speed_perturbed_items_change_tempo_and_pitch(speech_dir):
    import librosa

    ds = SpeechDataset(read_manifest(speech_dir / "manifest.jsonl"), CharTokenizer())
    plain = ds[0][0]
    f0 = {}
    for speed in (0.9, 1.0, 1.1):
        wave, targets, index = ds[(0, speed)]
        assert index == 0 and torch.equal(targets, ds[0][1])
        assert abs(len(wave) - len(plain) / speed) <= 2
        track = librosa.yin(wave.numpy(), fmin=60, fmax=400, sr=16000)
        f0[speed] = float(torch.tensor(track).median())
    assert torch.equal(ds[(0, 1.0)][0], plain)
    for speed in (0.9, 1.1):  # resampling moves the voice's pitch by the same factor
        assert abs(f0[speed] / f0[1.0] - speed) < 0.03, f0


def test_filter_reports_reasons():
    tok = CharTokenizer()
    entries = [
        Utterance("a.wav", 2.0, "fine"),
        Utterance("b.wav", 0.1, "too short"),
        Utterance("c.wav", 40.0, "too long"),
        Utterance("d.wav", 1.0, ""),
        Utterance("e.wav", 0.5, "far too many letters for half a second of audio at this frame rate"),
        Utterance("f.wav", 2.0, "Upper Case"),
    ]
    kept, report = filter_utterances(entries, tok, output_frame_rate=100 / 3, min_duration=0.3, max_duration=20)
    assert [e.audio_filepath for e in kept] == ["a.wav"]
    assert report.kept == 1 and sum(report.dropped.values()) == 5
    assert "1 transcript too long for its frames" in str(report)
    assert ctc_min_frames([1, 2, 2, 3, 3, 3]) == 9


def test_filter_keeps_only_transcripts_that_fit_the_fastest_speed():
    tok = CharTokenizer()
    entries = [Utterance("a.wav", 0.345, "abcdefghij")]  # 11 frames at speed 1; 9 when sped up by 1.2
    assert filter_utterances(entries, tok, output_frame_rate=100 / 3)[1].kept == 1
    kept, report = filter_utterances(entries, tok, output_frame_rate=100 / 3, speed_factors=(0.9, 1.0, 1.2))
    assert kept == [] and "1 transcript too long for its frames" in str(report)


def _durations(n=200, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g) * 9 + 1).tolist()


def test_bucket_sampler_budget_coverage_and_determinism():
    durs = _durations()
    s = BucketBatchSampler(durs, max_batch_seconds=30, seed=3)
    s.set_epoch(0)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(durs)))
    for b in batches:
        assert len(b) == 1 or max(durs[i] for i in b) * len(b) <= 30
    spread = [max(durs[i] for i in b) - min(durs[i] for i in b) for b in batches if len(b) > 1]
    assert sum(spread) / len(spread) < 1.0  # bucketing keeps similar durations together
    assert list(s) == batches and len(s) == len(batches)
    s.set_epoch(1)
    assert list(s) != batches
    other = BucketBatchSampler(durs, max_batch_seconds=30, seed=3)
    other.set_epoch(0, start_batch=5)
    assert list(other) == batches[5:]


def test_bucket_sampler_shards_by_rank():
    durs = _durations(101)
    full = BucketBatchSampler(durs, 25, seed=0)
    shards = [BucketBatchSampler(durs, 25, seed=0, rank=r, world_size=2) for r in range(2)]
    for s in (full, *shards):
        s.set_epoch(4)
    a, b = list(shards[0]), list(shards[1])
    assert len(a) == len(b)
    seen = {i for batch in a + b for i in batch}
    assert seen == set(range(101))
    assert {tuple(x) for x in a}.isdisjoint({tuple(x) for x in b}) or len(full) % 2 == 1


def test_bucket_sampler_speed_factors_are_drawn_per_epoch_and_packed_by_perturbed_duration():
    durs = _durations()
    factors = (0.9, 1.0, 1.1)
    s = BucketBatchSampler(durs, max_batch_seconds=30, seed=3, speed_factors=factors)
    s.set_epoch(0)
    batches = list(s)
    items = [item for b in batches for item in b]
    assert sorted(i for i, _ in items) == list(range(len(durs)))
    assert {f for _, f in items} == set(factors)
    for b in batches:  # the budget holds for the audio as it will be read: duration / factor
        assert len(b) == 1 or max(durs[i] / f for i, f in b) * len(b) <= 30
    again = BucketBatchSampler(durs, max_batch_seconds=30, seed=3, speed_factors=factors)
    again.set_epoch(0, start_batch=4)
    assert list(again) == batches[4:]  # a pure function of (seed, epoch): resume sees the same factors
    s.set_epoch(1)
    next_epoch = dict(item for b in s for item in b)
    assert next_epoch != dict(items)  # each epoch draws again
    plain = BucketBatchSampler(durs, max_batch_seconds=30, seed=3)
    plain.set_epoch(0)
    assert all(isinstance(i, int) for b in plain for i in b)
    with pytest.raises(ValueError, match="speed factors must be positive"):
        BucketBatchSampler(durs, 30, speed_factors=(0.0, 1.0))
