#!/usr/bin/env python3
"""Inference speed end to end, with accuracy, against pocketsphinx on the same files in the same run.

    python tools/bench_infer.py model=exp/small/best.pt lm=exp/lm/lm.bin lexicon=exp/lm/lexicon.txt threads=2

Real-time factor (RTF) = processing seconds / audio seconds, over the first `num_files` entries of
`manifest` (sorted by path), each file one utterance as `asr.evaluate` reads it, batched as
`asr.transcribe` batches its inputs (sorted by length within pools of `pool_seconds` of audio, at
most `batch_seconds` of padded audio per batch; the padding share is printed). For asr it counts every stage, each timed on its own with perf_counter in
one loop over batches:

    load      load_bundle (and, for beam+LM, building the decoder: KenLM model and lexicon trie)
    read      load_audio of the batch's files and padding
    features  log-mel + normalization (Recognizer.features)
    model     acoustic model + log-softmax, moved to the CPU (Recognizer.model)
    decode    GreedyDecoder or BeamSearchDecoder (with lm + lexicon)

read, features and model run once per batch and count toward both decoders; each decoder's RTF is
load + read + features + model + its own decoding. pocketsphinx (PyPI `pocketsphinx`, its bundled
US English acoustic model, trigram LM and CMU dictionary) gets the same files through the same
reader: load (Decoder()), read (load_audio → 16-bit PCM), decode (process_raw of the whole
utterance, features and search inside). WER and CER of every system come from asr.metrics.error_rates.

Options (key=value; conf/transcribe.yaml and conf/decoder/beam.yaml keys apply too, e.g. device=cpu
batch_seconds=300 decoder.beam_size=50):
    manifest      default data/synthetic/test.jsonl
    num_files     default 100
    model         model bundle (default: the bundled model)
    lm, lexicon   KenLM model and lexicon for the beam+LM row (default: bundled, the ones in asr/assets; lm=null lexicon=null skips the row)
    lm_weight, word_score, beam_size   beam decoder settings (default: conf/decoder/beam.yaml's)
    threads       torch CPU threads (default 2; pocketsphinx is single-threaded)
    pocketsphinx  true | false (default true; needs `pip install 'asr[bench]'`)
    report        JSON file for all the numbers (default: none)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from asr.audio import SAMPLE_RATE, AudioError, load_audio  # noqa: E402
from asr.bundle import BundleError, load_bundle  # noqa: E402
from asr.config import UsageError, load_config, pick_device, run_main, split_args, tool_overrides  # noqa: E402
from asr.data import ManifestError, Utterance, read_manifest  # noqa: E402
from asr.decoding import DecoderError, GreedyDecoder, build_decoder  # noqa: E402
from asr.files import write_text_atomic  # noqa: E402
from asr.metrics import error_rates  # noqa: E402
from asr.transcribe import Segment, batches  # noqa: E402

TOOL_DEFAULTS = {"manifest": "data/synthetic/test.jsonl", "num_files": "100", "pocketsphinx": "true",
                 "report": "null"}
DECODER_ALIASES = {"lm": "decoder.lm", "lexicon": "decoder.lexicon", "lm_weight": "decoder.lm_weight",
                   "word_score": "decoder.word_score", "beam_size": "decoder.beam_size"}
THREADS_ALIAS, DEFAULT_THREADS = "threads", 2
ASR_STAGES = ("load", "read", "features", "model", "decode")
PCM_SCALE = 32767  # float samples in [-1, 1] → 16-bit PCM
INSTALL_HINT = "pip install 'asr[bench]'"
USAGE = ("python tools/bench_infer.py [manifest=test.jsonl] [num_files=100] model=best.pt [lm=lm.bin lexicon=lexicon.txt] "
         "[threads=2] [pocketsphinx=false] [report=bench.json]")


@dataclass
class Run:
    """One system's stage seconds and transcripts."""

    name: str
    seconds: dict[str, float] = field(default_factory=dict)
    hyps: list[str] = field(default_factory=list)

    def add(self, stage: str, seconds: float) -> None:
        """Count `seconds` toward `stage`."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @property
    def total(self) -> float:
        """Seconds over all stages."""
        return sum(self.seconds.values())


def parse_overrides(argv: list[str]) -> DictConfig:
    """The transcribe config with decoder=beam, the aliases mapped and the tool options added."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"bench_infer takes key=value overrides only, got {' '.join(paths)!r}; usage: {USAGE}")
    if any(o.partition("=")[0] == "decoder" for o in overrides):
        raise UsageError("bench_infer always runs greedy and, unless lm=null, beam+LM; drop decoder=")
    rewritten = tool_overrides(overrides, TOOL_DEFAULTS, {**DECODER_ALIASES, THREADS_ALIAS: "num_threads"})
    if not any(o.partition("=")[0] in (THREADS_ALIAS, "num_threads") for o in overrides):
        rewritten.append(f"num_threads={DEFAULT_THREADS}")
    cfg = load_config("transcribe", ["decoder=beam", *rewritten], plain_keys=("model",))
    if not isinstance(cfg.num_files, int) or isinstance(cfg.num_files, bool) or cfg.num_files < 1:
        raise UsageError(f"num_files must be a positive integer, got {cfg.num_files}")
    if not isinstance(cfg.num_threads, int) or cfg.num_threads < 1:
        raise UsageError(f"threads must be a positive integer, got {cfg.num_threads}")
    if not isinstance(cfg.pocketsphinx, bool):
        raise UsageError(f"pocketsphinx must be true or false, got {cfg.pocketsphinx}")
    if (cfg.decoder.lm is None) != (cfg.decoder.lexicon is None):
        raise UsageError("the beam+LM row needs both lm= and lexicon=, or neither (null): tools/build_lm.py writes both")
    return cfg


def select_files(manifest: str, num_files: int) -> list[Utterance]:
    """The first `num_files` entries of the manifest, sorted by audio path."""
    return sorted(read_manifest(manifest)[:num_files], key=lambda e: e.audio_filepath)


def bench_asr(cfg: DictConfig, entries: list[Utterance], device: torch.device) -> tuple[list[Run], float, float, list[int]]:
    """Greedy and (with an LM) beam+LM runs over `entries`, sharing the read/features/model stages; also the
    wall seconds of it all, the seconds its timed stages account for (each counted once), and the padded
    length in samples of every batch."""
    began = time.perf_counter()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    greedy, beam = Run("asr greedy"), Run("asr beam+LM") if cfg.decoder.lm is not None else None
    t = time.perf_counter()
    bundle = load_bundle(cfg.model, device)
    load_seconds = time.perf_counter() - t
    greedy.add("load", load_seconds)
    accounted = load_seconds
    decoders = [(greedy, GreedyDecoder(bundle.tokenizer, bundle.recognizer.frame_seconds))]
    if beam is not None:
        t = time.perf_counter()
        decoders.append((beam, build_decoder(cfg.decoder, bundle.tokenizer, bundle.recognizer.frame_seconds)))
        beam.add("load", load_seconds + time.perf_counter() - t)
        accounted += time.perf_counter() - t
    recognizer, sample_rate = bundle.recognizer, bundle.recognizer.features.sample_rate
    for run in (r for r, _ in decoders):
        run.hyps = [""] * len(entries)
    read_seconds, padded_lengths = [0.0], []

    def read_all() -> Iterator[Segment]:
        for i, e in enumerate(entries):
            t = time.perf_counter()
            wave = load_audio(e.audio_filepath, sample_rate, e.offset, e.duration if e.offset else None)
            read_seconds[0] += time.perf_counter() - t
            yield Segment(i, 0.0, wave)

    with torch.inference_mode():
        for batch in batches(read_all(), cfg.batch_seconds, cfg.pool_seconds):  # exactly as asr.transcribe batches
            idx = [seg.source for seg in batch]
            padded_lengths.append(len(batch) * max(len(seg.wave) for seg in batch))
            t0 = time.perf_counter() - read_seconds[0]
            read_seconds[0] = 0.0
            lengths = torch.tensor([len(seg.wave) for seg in batch]).to(device)
            padded = torch.nn.utils.rnn.pad_sequence([seg.wave for seg in batch], batch_first=True).to(device)
            sync()
            t1 = time.perf_counter()
            feats, feat_lengths = recognizer.features(padded, lengths)
            sync()
            t2 = time.perf_counter()
            logits, out_lengths = recognizer.model(feats, feat_lengths)
            log_probs, out_lengths = logits.float().log_softmax(-1).cpu(), out_lengths.cpu()
            t3 = time.perf_counter()
            accounted += t3 - t0
            for run, decoder in decoders:
                run.add("read", t1 - t0)
                run.add("features", t2 - t1)
                run.add("model", t3 - t2)
                t = time.perf_counter()
                hyps = decoder.decode(log_probs, out_lengths)
                run.add("decode", time.perf_counter() - t)
                accounted += time.perf_counter() - t
                for i, hyp in zip(idx, hyps):
                    run.hyps[i] = hyp.text
    return [r for r, _ in decoders], time.perf_counter() - began, accounted, padded_lengths


def pocketsphinx_decoder_class() -> type:
    """pocketsphinx's Decoder class; UsageError when the package is not installed."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise UsageError(f"pocketsphinx is not installed ({INSTALL_HINT}); or pass pocketsphinx=false") from None
    return Decoder


def bench_pocketsphinx(entries: list[Utterance]) -> Run:
    """pocketsphinx with its bundled US English model over the same files, one utterance each."""
    Decoder = pocketsphinx_decoder_class()
    run = Run("pocketsphinx")
    t = time.perf_counter()
    decoder = Decoder(loglevel="FATAL", samprate=SAMPLE_RATE)
    run.add("load", time.perf_counter() - t)
    for e in entries:
        t0 = time.perf_counter()
        wave = load_audio(e.audio_filepath, SAMPLE_RATE, e.offset, e.duration if e.offset else None)
        pcm = (wave.clamp(-1, 1) * PCM_SCALE).round().to(torch.int16).numpy().tobytes()
        t1 = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        run.hyps.append(hyp.hypstr if hyp is not None else "")
        run.add("read", t1 - t0)
        run.add("decode", time.perf_counter() - t1)
    return run


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def main(argv: list[str]) -> int:
    """Run the benchmark and print RTF, stage shares and WER per system."""
    cfg = parse_overrides(argv)
    if cfg.pocketsphinx:
        pocketsphinx_decoder_class()  # not installed: say so before the asr part runs
    torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    entries = select_files(cfg.manifest, cfg.num_files)
    audio_seconds = sum(e.duration for e in entries)
    runs, asr_wall, accounted, padded_lengths = bench_asr(cfg, entries, device)
    if cfg.pocketsphinx:
        runs.append(bench_pocketsphinx(entries))
    refs = [e.text for e in entries]

    padded = sum(padded_lengths) / SAMPLE_RATE
    print(f"{len(entries)} files of {cfg.manifest} ({audio_seconds / 60:.2f} min of audio; {len(padded_lengths)} batches, "
          f"{100 * (padded / audio_seconds - 1):.0f}% padding); model {cfg.model}; "
          f"device {device}, torch threads {torch.get_num_threads()}; batch_seconds {cfg.batch_seconds}"
          + (f"; beam_size {cfg.decoder.beam_size}, lm_weight {cfg.decoder.lm_weight:g}, "
             f"word_score {cfg.decoder.word_score:g}, lm {cfg.decoder.lm}" if cfg.decoder.lm else "; lm=null: beam+LM skipped")
          + (f"; pocketsphinx {_version('pocketsphinx')} (1 thread)" if cfg.pocketsphinx else ""))
    header = f"{'system':14s} {'RTF':>8s} {'WER':>7s} {'CER':>7s}  " + " ".join(f"{s:>8s}" for s in ASR_STAGES)
    print(header + "   (share of the system's time)")
    results = []
    for run in runs:
        rates = error_rates(refs, run.hyps)
        shares = " ".join(f"{100 * run.seconds[s] / run.total:7.1f}%" if s in run.seconds else f"{'-':>8s}"
                          for s in ASR_STAGES)
        print(f"{run.name:14s} {run.total / audio_seconds:8.4f} {rates.wer:7.2%} {rates.cer:7.2%}  {shares}")
        results.append({"system": run.name, "rtf": run.total / audio_seconds, "seconds": run.total,
                        "stage_seconds": run.seconds, "wer": rates.wer, "cer": rates.cer})
    if cfg.pocketsphinx:
        ps = results[-1]
        for r in results[:-1]:
            print(f"RTF ratio {r['system']} / pocketsphinx: {r['rtf'] / ps['rtf']:.3f}")
    print(f"asr wall time {asr_wall:.2f} s for all its rows, of which the timed stages account for {accounted:.2f} s")
    if cfg.report is not None:
        report = {"manifest": str(cfg.manifest), "num_files": len(entries), "audio_seconds": audio_seconds,
                  "model": str(cfg.model), "device": str(device), "threads": torch.get_num_threads(),
                  "decoder": OmegaConf.to_container(cfg.decoder, resolve=True), "systems": results}
        write_text_atomic(cfg.report, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main, errors=(BundleError, DecoderError, ManifestError, AudioError))
