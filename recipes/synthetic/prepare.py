"""Synthesize a labeled English speech corpus with every TTS voice this machine offers.

    python recipes/synthetic/prepare.py out_dir=data/synthetic hours=20 seed=0 jobs=2

Sentences from Debian's fortunes, WordNet and the KJV Bible are normalized with
`asr.text.normalize_text` and read by espeak-ng, flite, festival, hibari-tts, RHVoice, pico, Piper and Kokoro
voices, with speed/pitch as engine parameters and noise and telephone channels added afterwards. Writes
`<out_dir>/wav/<split>/*.wav` (16 kHz mono 16-bit), `train.jsonl`, `dev.jsonl`, `test.jsonl`,
`test_unseen_voice.jsonl` and `summary.json`.

Three steps: plan (a pure function of seed, hours and the voices found: which sentence, voice,
parameters and augmentation every utterance gets), synthesize what is not on disk yet (parallel,
resumable: finished WAVs are skipped, new ones are written atomically), and write the manifests
from the plan and the files with their measured durations. Options: conf/prepare.yaml.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # engines.py and text_sources.py sit beside this script

from engines import (  # noqa: E402
    FAMILIES, NOISE_COLORS, VoiceInventory, family_of, find_voices, is_valid_wav, supports_pitch, synthesize_chunk,
)
from text_sources import Sentence, load_sentences  # noqa: E402

from asr.audio import audio_duration  # noqa: E402
from asr.config import UsageError, load_config, run_main, split_args  # noqa: E402
from asr.data import Utterance, write_manifest  # noqa: E402
from asr.files import write_text_atomic  # noqa: E402

CONF_DIR = HERE / "conf"
SPLITS = ("train", "dev", "test", "test_unseen_voice")
# the sentences each split reads: the unseen-voice test reads the test sentences
SENTENCE_POOL = {"train": "train", "dev": "dev", "test": "test", "test_unseen_voice": "test"}
MAX_ERRORS_SHOWN = 10


# --------------------------------------------------------------------------------------------------
# Plan

def _unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts` (stable across runs and machines, unlike hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sentence_split(text: str, seed: int, dev: float, test: float) -> str:
    """The split a sentence belongs to ("train", "dev" or "test"), by a seeded hash of its text."""
    u = _unit_hash(seed, "sentence", text)
    return "dev" if u < dev else "test" if u < dev + test else "train"


def weighted_round_robin(weights: dict[str, float]) -> Iterator[str]:
    """Names in proportion to their weights, evenly interleaved (smooth weighted round robin).

    Every name with a positive weight comes up within the first len(weights) picks.
    """
    names = [n for n in sorted(weights) if weights[n] > 0]
    total = sum(weights[n] for n in names)
    current = {n: 0.0 for n in names}
    while names:
        for n in names:
            current[n] += weights[n]
        best = max(names, key=lambda n: current[n])
        current[best] -= total
        yield best


def _utterance(uid: str, split: str, sentence: Sentence, voice: str, cfg: dict) -> dict:
    """The planned utterance `uid`: engine parameters and augmentation drawn from an RNG seeded by (seed, uid)."""
    rng = random.Random(f"{cfg['seed']}:{uid}")
    aug = cfg["augment"]
    draws = {  # always draw every number, in this order, so one setting never shifts the others
        "speed": (rng.random() < aug["speed_prob"], round(rng.uniform(*aug["speed_range"]), 3)),
        "pitch": (rng.random() < aug["pitch_prob"], round(rng.uniform(*aug["pitch_range"]), 3)),
        "noise": (rng.random() < aug["noise_prob"], rng.choice(NOISE_COLORS)),
        "snr_db": (True, round(rng.uniform(*aug["noise_snr_db"]), 1)),
        "telephone": (rng.random() < aug["telephone_prob"], True),
    }
    item = {"id": uid, "split": split, "text": sentence.text, "source": sentence.source, "voice": voice,
            "seed": rng.getrandbits(63)}
    if split in aug["splits"]:
        for key in ("speed", "pitch", "noise", "telephone"):
            use, value = draws[key]
            if use and (key != "pitch" or supports_pitch(voice)):
                item[key] = value
        if "noise" in item:
            item["snr_db"] = draws["snr_db"][1]
    spec = json.dumps({k: v for k, v in item.items() if k not in ("split", "source")}, sort_keys=True)
    item["path"] = f"wav/{split}/{uid}-{hashlib.sha1(spec.encode()).hexdigest()[:10]}.wav"  # content-named
    return item


def plan_split(split: str, sentences: list[Sentence], voices: dict[str, list[str]], seconds: float,
               cfg: dict) -> list[dict]:
    """Utterances for one split until the planned duration reaches `seconds`.

    Sentences are taken in a seeded shuffled order (reshuffled when used up); engine families take
    turns by weight; the voice inside a family and the parameters come from the utterance's own RNG.
    The list for a larger `seconds` starts with the list for a smaller one.
    """
    weights = {f: float(cfg["voices"]["weights"].get(f, 0)) for f in voices if voices[f]}
    if not sentences or not any(weights.values()) or seconds <= 0:
        return []
    families = weighted_round_robin(weights)
    items: list[dict] = []
    order: list[Sentence] = []
    total = 0.0
    while total < seconds:
        i = len(items)
        if i % len(sentences) == 0:
            order = list(sentences)
            random.Random(f"{cfg['seed']}:{split}:pass{i // len(sentences)}").shuffle(order)
        sentence = order[i % len(sentences)]
        uid = f"{split}-{i:06d}"
        family = next(families)
        voice = random.Random(f"{cfg['seed']}:{uid}:voice").choice(voices[family])
        item = _utterance(uid, split, sentence, voice, cfg)
        total += len(sentence.text.split()) / cfg["text"]["words_per_second"] / item.get("speed", 1.0)
        items.append(item)
    return items


def split_shares(cfg: dict) -> dict[str, float]:
    """Share of `hours` per split (train gets what the held-out splits leave)."""
    shares = dict(cfg["split"])
    shares["train"] = 1.0 - sum(shares.values())
    return shares


def sentence_pools(sentences: list[Sentence], cfg: dict) -> dict[str, list[Sentence]]:
    """The sentences of each pool ("train", "dev", "test"), by `sentence_split` with cfg's seed and shares."""
    shares = split_shares(cfg)
    test_share = shares["test"] + shares["test_unseen_voice"]  # the unseen-voice split reads test sentences
    pools: dict[str, list[Sentence]] = defaultdict(list)
    for s in sentences:
        pools[sentence_split(s.text, cfg["seed"], shares["dev"], test_share)].append(s)
    return pools


def build_plan(sentences: list[Sentence], inventory: VoiceInventory, cfg: dict) -> list[dict]:
    """Every utterance of every split; a pure function of (sentences, voices found, cfg as plain types)."""
    shares = split_shares(cfg)
    pools = sentence_pools(sentences, cfg)
    plan = []
    for split in SPLITS:
        voices = inventory.unseen if split == "test_unseen_voice" else inventory.seen
        plan += plan_split(split, pools[SENTENCE_POOL[split]], voices, cfg["hours"] * 3600 * shares[split], cfg)
    return plan


# --------------------------------------------------------------------------------------------------
# Synthesis

def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _work(args: tuple[list[dict], str]) -> dict:
    items, out_dir = args
    result = synthesize_chunk(items, Path(out_dir))
    result["count"] = len(items)
    result["family"] = family_of(items[0]["voice"])
    return result


def make_chunks(todo: list[dict], chunk_size: int) -> list[list[dict]]:
    """Work units of at most `chunk_size` utterances of one engine family, families interleaved."""
    by_family: dict[str, list[dict]] = defaultdict(list)
    for item in todo:
        by_family[family_of(item["voice"])].append(item)
    queues = [[items[i : i + chunk_size] for i in range(0, len(items), chunk_size)] for items in by_family.values()]
    chunks = []
    while any(queues):
        for q in queues:
            if q:
                chunks.append(q.pop(0))
    return chunks


def synthesize(todo: list[dict], out_dir: Path, jobs: int, chunk_size: int) -> dict:
    """Synthesize `todo` over `jobs` processes with a progress bar; returns totals and errors by id."""
    totals = {"done": 0, "seconds": 0.0, "errors": {}, "wall": 0.0, "by_family": {}}
    if not todo:
        return totals
    start = time.perf_counter()
    chunks = [(chunk, str(out_dir)) for chunk in make_chunks(todo, chunk_size)]
    bar = tqdm(total=len(todo), unit="utt", desc="synthesizing", mininterval=1.0, dynamic_ncols=True)
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs, initializer=_init_worker) as pool:
            results = pool.imap_unordered(_work, chunks)
            for r in results:
                _add(totals, r, bar)
    else:
        _init_worker()
        for chunk in chunks:
            _add(totals, _work(chunk), bar)
    bar.close()
    totals["wall"] = time.perf_counter() - start
    return totals


def _add(totals: dict, result: dict, bar: tqdm) -> None:
    totals["done"] += result["done"]
    totals["seconds"] += result["seconds"]
    totals["errors"].update(result["errors"])
    family = totals["by_family"].setdefault(result["family"], [0.0, 0.0])  # audio seconds, worker seconds
    family[0] += result["seconds"]
    family[1] += result["wall"]
    bar.update(result["count"])
    bar.set_postfix(audio_h=f"{totals['seconds'] / 3600:.2f}", failed=len(totals["errors"]), refresh=False)


# --------------------------------------------------------------------------------------------------
# Manifests and summary

def augment_record(item: dict) -> dict:
    """The augmentation an utterance got, as written in its manifest line."""
    rec = {k: item[k] for k in ("speed", "pitch", "telephone") if k in item}
    if "noise" in item:
        rec.update(noise=item["noise"], noise_snr_db=item["snr_db"])
    return rec


def write_manifests(plan: list[dict], out_dir: Path) -> dict[str, list[Utterance]]:
    """Write `<split>.jsonl` for every split with at least one finished file (removing an older manifest of a
    split that has none now); returns the entries."""
    entries: dict[str, list[Utterance]] = {}
    for split in SPLITS:
        rows = []
        for item in (it for it in plan if it["split"] == split):
            path = out_dir / item["path"]
            if is_valid_wav(path):
                extra = {"voice": item["voice"], "source": item["source"], "augment": augment_record(item)}
                rows.append(Utterance(str(path.resolve()), audio_duration(path), item["text"], extra=extra))
        if rows:
            write_manifest(out_dir / f"{split}.jsonl", rows)
            entries[split] = rows
        else:
            (out_dir / f"{split}.jsonl").unlink(missing_ok=True)
    return entries


def summarize(cfg: DictConfig, plan: list[dict], entries: dict[str, list[Utterance]], inventory: VoiceInventory,
              sentences: list[Sentence], missing_sources: dict[str, str], run: dict, skipped: int,
              stale: int, wall: float) -> dict:
    """Everything worth knowing about the corpus and this run, as plain types."""
    planned = Counter(it["split"] for it in plan)
    by_family: dict[str, dict[str, float]] = {}
    for split, rows in entries.items():
        hours: Counter = Counter()
        for e in rows:
            hours[family_of(e.extra["voice"])] += e.duration / 3600
        by_family[split] = {f: round(h, 4) for f, h in sorted(hours.items())}
    engines = {}
    for f in FAMILIES:
        voices = inventory.seen.get(f, []) + inventory.unseen.get(f, [])
        engines[f] = f"ok: {len(voices)} voices" if voices else f"skipped: {inventory.problems.get(f, 'no voices')}"
    speed = run["seconds"] / run["wall"] if run["wall"] else None
    return {
        "out_dir": str(cfg.out_dir), "seed": cfg.seed, "hours_requested": cfg.hours,
        "engines": engines,
        "voice_problems": {k: v for k, v in inventory.problems.items() if k not in FAMILIES},
        "text_sources": dict(Counter(s.source for s in sentences)), "text_sources_missing": missing_sources,
        "splits": {s: {"utterances": len(entries.get(s, [])), "planned": planned[s],
                       "hours": round(sum(e.duration for e in entries.get(s, [])) / 3600, 4),
                       "voices": len({e.extra["voice"] for e in entries.get(s, [])})} for s in SPLITS},
        "hours_by_family": by_family,
        "run": {"synthesized": run["done"], "skipped_existing": skipped, "failed": len(run["errors"]),
                "audio_seconds": round(run["seconds"], 2), "synthesis_wall_seconds": round(run["wall"], 2),
                "audio_seconds_per_wall_second": round(speed, 2) if speed else None,
                "total_wall_seconds": round(wall, 2), "jobs": cfg.jobs, "stale_wav_files": stale,
                "audio_seconds_per_worker_second_by_family": {
                    f: round(a / w, 1) for f, (a, w) in sorted(run["by_family"].items()) if w}},
    }


def print_summary(summary: dict) -> None:
    """The summary as a short table."""
    print("\nsplit               utts   hours  voices  hours by family")
    for split, s in summary["splits"].items():
        fams = ", ".join(f"{f} {h:.3f}" for f, h in summary["hours_by_family"].get(split, {}).items())
        print(f"{split:18s} {s['utterances']:5d} {s['hours']:7.3f} {s['voices']:7d}  {fams}")
    run = summary["run"]
    speed = run["audio_seconds_per_wall_second"]
    print(f"synthesized {run['synthesized']} utterances ({run['audio_seconds']:.1f} s of audio) in "
          f"{run['synthesis_wall_seconds']:.1f} s with {run['jobs']} job(s)"
          + (f": {speed:.1f} audio seconds per wall second" if speed else "")
          + f"; skipped {run['skipped_existing']} existing; failed {run['failed']}; total {run['total_wall_seconds']:.1f} s")
    per_family = run["audio_seconds_per_worker_second_by_family"]
    if per_family:
        print("audio seconds per worker second: " + ", ".join(f"{f} {v:.0f}" for f, v in per_family.items()))
    for family, state in summary["engines"].items():
        if state.startswith("skipped"):
            print(f"engine {family} was {state}")
    for source, why in summary["text_sources_missing"].items():
        print(f"text source {source} was skipped: {why}")
    if run["stale_wav_files"]:
        print(f"note: {run['stale_wav_files']} WAV files under wav/ are not in this plan (left from other settings)")


def check_config(cfg: DictConfig) -> None:
    """Raise UsageError for values the recipe cannot work with."""
    if cfg.hours <= 0:
        raise UsageError(f"hours must be positive, got {cfg.hours}")
    if cfg.jobs < 1 or cfg.chunk_size < 1:
        raise UsageError("jobs and chunk_size must be at least 1")
    held_out = cfg.split.dev + cfg.split.test + cfg.split.test_unseen_voice
    if min(cfg.split.dev, cfg.split.test, cfg.split.test_unseen_voice) < 0 or held_out >= 1:
        raise UsageError(f"split shares must be non-negative and sum to less than 1, got {held_out}")
    unknown = set(cfg.augment.splits) - set(SPLITS)
    if unknown:
        raise UsageError(f"augment.splits: unknown split(s) {sorted(unknown)}; known: {list(SPLITS)}")


def read_sentences(cfg: DictConfig) -> tuple[list[Sentence], dict[str, str]]:
    """The recipe's sentences from the sources in `cfg.text`, and the sources that could not be read."""
    t = cfg.text
    return load_sentences(list(t.sources), t.min_words, t.max_words, Path(t.fortunes_dir), Path(t.wordnet_dir),
                          t.bible_command)


def print_inventory(inventory: VoiceInventory) -> None:
    """One line per engine family: its voices, or why it is skipped."""
    for family in FAMILIES:
        seen, unseen = inventory.seen.get(family, []), inventory.unseen.get(family, [])
        if seen or unseen:
            names = [v.split(":", 1)[1] for v in seen]
            shown = ", ".join(names[:6]) + (f", ... ({len(names)} voices)" if len(names) > 6 else "")
            extra = f"; unseen-voice test only: {', '.join(v.split(':', 1)[1] for v in unseen)}" if unseen else ""
            print(f"engine {family:9s} ok: {shown}{extra}")
        else:
            print(f"engine {family:9s} SKIPPED: {inventory.problems.get(family, 'no voices')}")
    for voice, why in inventory.problems.items():
        if voice not in FAMILIES:
            print(f"  voice {voice} skipped: {why}")


def main(argv: list[str]) -> int:
    """Plan, synthesize and write the manifests (see the module docstring)."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"unexpected argument(s) {paths}; use key=value overrides, e.g. out_dir=data/synthetic hours=1")
    cfg = load_config("prepare", overrides, config_dir=CONF_DIR)
    check_config(cfg)
    start = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    inventory = find_voices(OmegaConf.to_container(cfg.voices, resolve=True))
    print_inventory(inventory)
    if not any(inventory.seen.values()):
        raise UsageError("no text-to-speech engine is usable; install espeak-ng, flite, festival, hibari-tts or piper-tts "
                         "(tools/install.sh dev)")
    sentences, missing_sources = read_sentences(cfg)
    for source, why in missing_sources.items():
        print(f"text source {source} SKIPPED: {why}")
    if not sentences:
        raise UsageError("no sentences: none of the text sources could be read")
    counts = Counter(s.source for s in sentences)
    print(f"sentences: {len(sentences)} ({', '.join(f'{n} {src}' for src, n in counts.items())})")

    plan = build_plan(sentences, inventory, OmegaConf.to_container(cfg, resolve=True))
    for tmp in out_dir.glob("wav/*/.*.tmp.wav"):
        tmp.unlink()  # left by an interrupted run
    todo = [it for it in plan if not is_valid_wav(out_dir / it["path"])]
    print(f"plan: {len(plan)} utterances; {len(plan) - len(todo)} already on disk, {len(todo)} to synthesize")
    run = synthesize(todo, out_dir, cfg.jobs, cfg.chunk_size)
    for uid, why in list(run["errors"].items())[:MAX_ERRORS_SHOWN]:
        print(f"failed: {uid}: {why}")
    if len(run["errors"]) > MAX_ERRORS_SHOWN:
        print(f"... and {len(run['errors']) - MAX_ERRORS_SHOWN} more failures")

    entries = write_manifests(plan, out_dir)
    planned_paths = {str(Path(it["path"])) for it in plan}
    stale = sum(1 for p in out_dir.glob("wav/*/*.wav") if str(p.relative_to(out_dir)) not in planned_paths)
    summary = summarize(cfg, plan, entries, inventory, sentences, missing_sources, run, len(plan) - len(todo), stale,
                        time.perf_counter() - start)
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    print(f"wrote {', '.join(f'{s}.jsonl' for s in entries)} and summary.json in {out_dir}")
    missing = [s for s in SPLITS if s not in entries and any(it["split"] == s for it in plan)]
    if not inventory.unseen or not any(inventory.unseen.values()):
        print("warning: no unseen-voice engine (flite slt or festival cmu_us_slt_arctic_hts); no test_unseen_voice.jsonl")
    if missing or run["errors"]:
        print(f"error: {len(run['errors'])} utterances failed to synthesize"
              + (f"; no files for {', '.join(missing)}" if missing else "")
              + "; re-run the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
