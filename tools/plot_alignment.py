#!/usr/bin/env python3
"""Plot how a model hears one recording: the log-mel spectrogram under the recognized words, and the
CTC posteriogram (each output frame's token probabilities) with the greedy path.

    python tools/plot_alignment.py samples/sample.wav [out=samples/sample.alignment.png] \\
        [model=exp/small/best.pt] [decoder=beam] [text="the reference transcript"]

Options (key=value; the rest of conf/transcribe.yaml applies too, e.g. device=cpu num_threads=1
decoder.lm_weight=1.0):
    out    the PNG to write (default: next to the audio, FILE.alignment.png)
    text   the reference transcript: printed in the title with the utterance's WER and CER
    model  model bundle (default: the bundled model); decoder= auto (default: as transcribe), greedy or beam

The posteriogram shows only the tokens whose probability reaches MIN_SHOWN_PROB in some frame (all
of them for a character model; a readable subset for a BPE one); blank is the bottom row. Words
come from the decoder's word timings. One utterance-length recording at a time: longer than
MAX_SECONDS is refused (transcribe cuts long recordings into segments; plot one of those).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from asr.audio import AudioError, load_audio  # noqa: E402
from asr.bundle import BundleError, load_bundle  # noqa: E402
from asr.config import UsageError, load_config, pick_device, run_main, split_args, tool_overrides  # noqa: E402
from asr.decoding import DecoderError, Hypothesis, build_decoder, resolve_auto  # noqa: E402
from asr.metrics import error_rates  # noqa: E402
from asr.plotting import pyplot, save_figure  # noqa: E402
from asr.text import normalize_text  # noqa: E402

MAX_SECONDS = 60.0     # longest recording plotted (the figure stays readable, the model runs once)
MIN_SHOWN_PROB = 0.05  # a token gets a posteriogram row if some frame gives it at least this probability
BLANK_LABEL = "∅"
SPACE_LABEL = "␣"


def token_label(token: str, index: int) -> str:
    """How a token is written on the posteriogram's axis."""
    if index == 0:
        return BLANK_LABEL
    return token.replace(" ", SPACE_LABEL).replace("▁", SPACE_LABEL) or "?"


def plot_alignment(wave: torch.Tensor, log_mel: torch.Tensor, probs: np.ndarray, hyp: Hypothesis, vocab: list[str],
                   frame_seconds: float, sample_rate: int, out: Path, title: str) -> Path:
    """Write the two-panel figure: log-mel with word spans on top, posteriogram with greedy path below."""
    seconds = len(wave) / sample_rate
    shown = [i for i in range(probs.shape[1]) if i == 0 or probs[:, i].max() >= MIN_SHOWN_PROB]
    width = min(24.0, max(8.0, 2.2 * seconds))
    fig, (ax_mel, ax_ctc) = pyplot().subplots(2, 1, figsize=(width, 7.5), dpi=100, sharex=True,
                                         gridspec_kw={"height_ratios": [1, max(1.0, len(shown) / 20)]})

    ax_mel.imshow(log_mel.T.numpy(), origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                  extent=(0, seconds, 0, log_mel.shape[1]))
    for n, word in enumerate(hyp.words):
        ax_mel.axvspan(word.start, word.end, ymin=0.9, ymax=1.0, color="white", alpha=0.25 + 0.5 * (n % 2))
        ax_mel.text((word.start + word.end) / 2, log_mel.shape[1] * 0.95, word.word, ha="center", va="center",
                    fontsize=9, color="black")
        ax_mel.axvline(word.start, color="white", lw=0.6, alpha=0.7)
        ax_mel.axvline(word.end, color="white", lw=0.6, ls="--", alpha=0.7)
    ax_mel.set_ylabel("log-mel band")
    ax_mel.set_title(title, fontsize=10, loc="left")

    frames = probs.shape[0]
    ax_ctc.imshow(probs[:, shown].T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1,
                  interpolation="nearest", extent=(0, frames * frame_seconds, -0.5, len(shown) - 0.5))
    best = probs.argmax(1)
    row = {token: r for r, token in enumerate(shown)}
    emitted = [t for t in range(frames) if best[t] != 0 and (t == 0 or best[t] != best[t - 1])]
    ax_ctc.scatter([(t + 0.5) * frame_seconds for t in emitted], [row[best[t]] for t in emitted], s=14,
                   color="tab:red", zorder=3, label="greedy path: a token is emitted")
    ax_ctc.set_yticks(range(len(shown)))
    ax_ctc.set_yticklabels([token_label(vocab[i], i) for i in shown], fontsize=8)
    ax_ctc.set_ylabel("token")
    ax_ctc.set_xlabel("seconds")
    ax_ctc.set_xlim(0, seconds)
    ax_ctc.legend(loc="upper right", fontsize=8)

    return save_figure(fig, out)


def main(argv: list[str]) -> int:
    """Command line: `python tools/plot_alignment.py FILE [out=PNG] [text=REFERENCE] [transcribe overrides]`."""
    paths, overrides = split_args(argv)
    if len(paths) != 1:
        raise UsageError("give one audio file: python tools/plot_alignment.py FILE [out=PNG] [text=REFERENCE] [model=...]")
    cfg = load_config("transcribe", tool_overrides(overrides, {"out": "null", "text": "null"}, {}), plain_keys=("model",))
    cfg.decoder = resolve_auto(cfg.decoder, bundled_model=cfg.model is None)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    path = Path(paths[0])
    device = pick_device(cfg.device)
    bundle = load_bundle(cfg.model, device)
    recognizer = bundle.recognizer
    decoder = build_decoder(cfg.decoder, bundle.tokenizer, recognizer.frame_seconds)
    sample_rate = recognizer.features.sample_rate
    wave = load_audio(path, sample_rate)
    if len(wave) > MAX_SECONDS * sample_rate:
        raise AudioError(f"{path}: {len(wave) / sample_rate:.1f} s is longer than {MAX_SECONDS:g} s; plot one segment at a time")

    with torch.no_grad():
        log_mel = recognizer.features.log_mel(wave[None].to(device))[0].cpu()
        log_probs, lengths = bundle.log_probs(wave[None].to(device), torch.tensor([len(wave)], device=device))
    log_probs = log_probs[:, : int(lengths[0])].cpu()
    (hyp,) = decoder.decode(log_probs, lengths.cpu())

    title = f"{path.name} ({len(wave) / sample_rate:.2f} s), {cfg.decoder.name}: {hyp.text!r}"
    if cfg.text is not None:
        rates = error_rates([normalize_text(str(cfg.text))], [hyp.text])
        title += f"\nreference: {normalize_text(str(cfg.text))!r} (WER {rates.wer:.0%}, CER {rates.cer:.0%})"
    out = Path(cfg.out) if cfg.out is not None else path.with_suffix(".alignment.png")
    plot_alignment(wave, log_mel, log_probs[0].exp().numpy(), hyp, bundle.tokenizer.vocab, recognizer.frame_seconds,
                   sample_rate, out, title)
    print(f"{path}: {hyp.text}\nplot: {out}")
    return 0


if __name__ == "__main__":
    run_main(main, errors=(AudioError, BundleError, DecoderError))
