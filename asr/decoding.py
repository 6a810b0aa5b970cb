"""Decoding: CTC log-probabilities → transcripts with word timestamps and confidences.

`GreedyDecoder` takes the best token of every frame, merges repeats and drops blanks.
`BeamSearchDecoder` wraps torchaudio's flashlight-text CTC beam search
(`torchaudio.models.decoder.ctc_decoder`), optionally with a word lexicon and a KenLM n-gram
language model (ARPA or binary, as written by `tools/build_lm.py`).

Both return one `Hypothesis` per utterance with the same word-level definitions:

* A word is a maximal run of emitted tokens between word separators: the space token of the
  character tokenizer, or a SentencePiece piece starting with '▁' (which starts a new word).
* A token's *run* is the frames of the CTC path that emit it (consecutive, before the blank or the
  next token). `start` = first frame of the word's first token × `frame_seconds`;
  `end` = (last frame of the word's last token + 1) × `frame_seconds`.
* `confidence` = mean over the word's tokens of the token's peak posterior, i.e. the largest
  `exp(log_prob[t, token])` over the frames t of its run. It lies in [0, 1].

For the beam decoder the frame path is rebuilt from the decoder's `timesteps` (the first frame of
every token): each token's run ends where the best split between "token" and "blank" frames lies
before the next token, which is the path the Viterbi beam search itself takes for that token sequence.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from asr import ASSETS_DIR
from asr.text import BLANK_ID, CharTokenizer, Tokenizer

INSTALL_HINT = "pip install flashlight-text"  # a dependency of asr; missing only from a broken install
WORD_SEPARATOR = " "          # the character tokenizer's word separator
FLASHLIGHT_SEPARATOR = "|"    # what flashlight-text calls the word separator ("silence") token
FLASHLIGHT_BLANK = "<blank>"  # our blank token's name in the flashlight token list
BUNDLED = "bundled"           # decoder.lm / decoder.lexicon value naming the files shipped with the package
BUNDLED_FILES = {"lm": ASSETS_DIR / "lm.bin", "lexicon": ASSETS_DIR / "lexicon.txt"}  # English 4-gram (tools/build_lm.py)
SENTENCEPIECE_WORD_START = "▁"
UNK_WORD = "<unk>"
PAD_SCORE = -1.0e4            # log-prob of impossible tokens on the appended word-boundary frame
DECODER_NAMES = ("greedy", "beam")
AUTO = "auto"                 # decoder.name resolved per model by resolve_auto (conf/decoder/auto.yaml)
GREEDY_KEYS = {"name"}
BEAM_KEYS = {"name", "beam_size", "beam_size_token", "beam_threshold", "lm", "lexicon", "lm_weight",
             "word_score", "unk_score", "sil_score", "log_add", "nbest"}


class DecoderError(Exception):
    """A decoder that cannot be built: missing flashlight-text, unreadable LM or lexicon, bad options."""


@dataclass
class WordTiming:
    """One recognized word: text, start and end in seconds, confidence in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass
class Hypothesis:
    """A transcript of one utterance.

    `tokens` are the collapsed token ids (no blanks); `score` is the log-probability of the greedy
    frame path, or the beam search score (acoustic + lm_weight × LM + word/silence scores).
    """

    text: str
    words: list[WordTiming] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    score: float = 0.0


def _is_char(tokenizer: Tokenizer) -> bool:
    return isinstance(tokenizer, CharTokenizer)


def _separator_id(tokenizer: Tokenizer) -> int | None:
    """The id of the character tokenizer's space token (None for SentencePiece or a space-less alphabet)."""
    if _is_char(tokenizer) and WORD_SEPARATOR in tokenizer.vocab:
        return tokenizer.vocab.index(WORD_SEPARATOR)
    return None


def _group_words(tokenizer: Tokenizer, tokens: Sequence[int]) -> list[list[int]]:
    """Positions in `tokens` of each word's tokens (separators belong to no word)."""
    words: list[list[int]] = []
    current: list[int] = []
    if _is_char(tokenizer):
        sep = _separator_id(tokenizer)
        for i, tok in enumerate(tokens):
            if tok == sep:
                if current:
                    words.append(current)
                current = []
            else:
                current.append(i)
    else:
        for i, tok in enumerate(tokens):
            if tokenizer.vocab[tok].startswith(SENTENCEPIECE_WORD_START) and current:
                words.append(current)
                current = []
            current.append(i)
    if current:
        words.append(current)
    return words


def _hypothesis(
    tokenizer: Tokenizer,
    frame_seconds: float,
    tokens: Sequence[int],
    starts: Sequence[int],
    ends: Sequence[int],
    peaks: Sequence[float],
    score: float,
) -> Hypothesis:
    """Assemble a Hypothesis from collapsed tokens, their run frames [start, end] and peak posteriors."""
    words = []
    for positions in _group_words(tokenizer, tokens):
        text = tokenizer.decode([tokens[i] for i in positions]).strip()
        if not text:  # e.g. a lone '▁' piece
            continue
        first, last = positions[0], positions[-1]
        words.append(WordTiming(
            word=text,
            start=round(starts[first] * frame_seconds, 6),
            end=round((ends[last] + 1) * frame_seconds, 6),
            confidence=float(np.mean([peaks[i] for i in positions])),
        ))
    return Hypothesis(" ".join(w.word for w in words), words, [int(t) for t in tokens], float(score))


class GreedyDecoder:
    """Best path decoding: argmax per frame, merge repeated tokens, drop blanks.

    Args:
        tokenizer: the model's tokenizer (character or SentencePiece); blank id 0.
        frame_seconds: duration of one model output frame (feature hop × subsampling).
    """

    def __init__(self, tokenizer: Tokenizer, frame_seconds: float) -> None:
        if frame_seconds <= 0:
            raise ValueError(f"frame_seconds must be positive, got {frame_seconds}")
        self.tokenizer = tokenizer
        self.frame_seconds = frame_seconds

    @torch.no_grad()
    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[Hypothesis]:
        """Decode a (B, T, V) batch of log-probabilities with valid frame counts `lengths` (B,)."""
        _check_inputs(log_probs, lengths, len(self.tokenizer))
        best_lp, best_ids = log_probs.float().max(dim=-1)  # on the model's device, then small tensors to CPU
        best_lp, best_ids = best_lp.cpu().numpy(), best_ids.cpu().numpy()
        lens = _lengths(lengths, log_probs)
        return [self._decode_path(best_ids[b, : lens[b]], best_lp[b, : lens[b]]) for b in range(len(lens))]

    def _decode_path(self, path: np.ndarray, path_lp: np.ndarray) -> Hypothesis:
        if len(path) == 0:
            return Hypothesis("")
        change = np.flatnonzero(np.diff(path)) + 1
        run_starts = np.concatenate([[0], change])
        run_ends = np.concatenate([change - 1, [len(path) - 1]])
        run_peaks = np.exp(np.maximum.reduceat(path_lp, run_starts))
        keep = path[run_starts] != BLANK_ID
        return _hypothesis(self.tokenizer, self.frame_seconds, path[run_starts][keep].tolist(),
                           run_starts[keep].tolist(), run_ends[keep].tolist(), run_peaks[keep].tolist(),
                           float(path_lp.sum()))


def _check_inputs(log_probs: torch.Tensor, lengths: torch.Tensor | None, vocab_size: int) -> None:
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must be (batch, frames, vocab), got shape {tuple(log_probs.shape)}")
    if log_probs.shape[-1] != vocab_size:
        raise ValueError(f"log_probs has {log_probs.shape[-1]} classes but the tokenizer has {vocab_size}")
    if lengths is not None and (lengths.ndim != 1 or len(lengths) != log_probs.shape[0]):
        raise ValueError(f"lengths must be ({log_probs.shape[0]},), got shape {tuple(lengths.shape)}")


def _lengths(lengths: torch.Tensor | None, log_probs: torch.Tensor) -> list[int]:
    if lengths is None:
        return [log_probs.shape[1]] * log_probs.shape[0]
    return [min(int(n), log_probs.shape[1]) for n in lengths.cpu()]


def _ctc_decoder_factory():
    """torchaudio's `ctc_decoder`, or DecoderError when flashlight-text is missing."""
    try:
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError) as err:
        raise DecoderError(f"beam search needs flashlight-text, which is not installed ({INSTALL_HINT})") from err
    return ctc_decoder


def _readable_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    try:
        with path.open("rb") as f:
            if not f.read(1):
                raise DecoderError(f"{what} {path} is empty")
    except IsADirectoryError:
        raise DecoderError(f"{what} {path} is a directory, not a file") from None
    except OSError as err:
        raise DecoderError(f"cannot read {what} {path}: {err.strerror or err}") from None
    return path


def _read_lexicon(path: Path, tokenizer: Tokenizer) -> list[tuple[str, list[str]]]:
    """(word, spelling in flashlight token names) pairs from a lexicon file ("word t o k e n s |").

    With the character tokenizer the file's spellings are used (checked against the alphabet); with
    SentencePiece each word is re-spelled with the tokenizer's own pieces.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DecoderError(f"cannot read lexicon {path}: {err}") from None
    tokens = set(_flashlight_tokens(tokenizer))
    entries = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        word, spelling = fields[0], fields[1:]
        if not _is_char(tokenizer):
            spelling = [tokenizer.vocab[i] for i in tokenizer.encode(word)]
        elif not spelling:
            raise DecoderError(f"{path}:{number}: no spelling for {word!r} (expected 'word c h a r s |')")
        unknown = [t for t in spelling if t not in tokens]
        if unknown:
            raise DecoderError(f"{path}:{number}: token {unknown[0]!r} of {word!r} is not in the tokenizer")
        entries.append((word, spelling))
    if not entries:
        raise DecoderError(f"lexicon {path} has no entries")
    return entries


def _flashlight_tokens(tokenizer: Tokenizer) -> list[str]:
    """Token names indexed like our ids: the blank as '<blank>', the space as '|'."""
    names = list(tokenizer.vocab)
    names[BLANK_ID] = FLASHLIGHT_BLANK
    sep = _separator_id(tokenizer)
    if sep is not None:
        names[sep] = FLASHLIGHT_SEPARATOR
    return names


class BeamSearchDecoder:
    """CTC beam search (flashlight-text via torchaudio), optionally with a lexicon and a KenLM LM.

    Args:
        tokenizer: the model's tokenizer; blank id 0, the character tokenizer's space is the word separator.
        frame_seconds: duration of one model output frame.
        beam_size: hypotheses kept after each frame.
        beam_size_token: tokens tried per frame (None: all).
        beam_threshold: hypotheses scoring more than this below the best are pruned.
        lm: KenLM word n-gram model (ARPA or binary), or None. Needs `lexicon`.
        lexicon: file of "word s p e l l i n g |" lines restricting output to its words, or None for
            lexicon-free decoding. With a SentencePiece tokenizer only its words are used (re-spelled).
        lm_weight: weight of the LM log-probability.
        word_score: added per emitted word (lexicon decoding).
        unk_score: added per out-of-lexicon word (-inf: only lexicon words are emitted).
        sil_score: added per word-separator token (character tokenizer; ignored for SentencePiece,
            which has no separator token).
        log_add: merge equal hypotheses with log-add instead of max.
        nbest: hypotheses returned per utterance by `decode_nbest`.

    Transcripts are spelled from the decoded tokens, so with `unk_score` > -inf an out-of-lexicon
    word appears as its letters rather than as '<unk>'.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        frame_seconds: float,
        beam_size: int = 50,
        beam_size_token: int | None = None,
        beam_threshold: float = 25.0,
        lm: str | os.PathLike | None = None,
        lexicon: str | os.PathLike | None = None,
        lm_weight: float = 1.0,
        word_score: float = 0.0,
        unk_score: float = -math.inf,
        sil_score: float = 0.0,
        log_add: bool = False,
        nbest: int = 1,
    ) -> None:
        if frame_seconds <= 0:
            raise ValueError(f"frame_seconds must be positive, got {frame_seconds}")
        if beam_size < 1 or nbest < 1 or (beam_size_token is not None and beam_size_token < 1):
            raise DecoderError(f"beam_size, beam_size_token and nbest must be >= 1 (got {beam_size}, "
                               f"{beam_size_token}, {nbest})")
        if lm is not None and lexicon is None:
            raise DecoderError("decoder.lm needs decoder.lexicon: a KenLM word model scores whole words, which "
                               "lexicon-free decoding never forms (tools/build_lm.py writes both)")
        ctc_decoder = _ctc_decoder_factory()
        self.tokenizer = tokenizer
        self.frame_seconds = frame_seconds
        self.nbest = nbest
        self.lm = _readable_file(lm, "language model") if lm is not None else None
        self.lexicon = _readable_file(lexicon, "lexicon") if lexicon is not None else None
        self._sep = _separator_id(tokenizer)
        # A char lexicon spells each word with a trailing '|', but our model emits no space after the
        # last word: one appended '|' frame makes the end of the utterance a word boundary.
        self._pad_end = self.lexicon is not None and self._sep is not None
        tokens = _flashlight_tokens(tokenizer)
        sil_token = FLASHLIGHT_SEPARATOR if self._sep is not None else FLASHLIGHT_BLANK
        with tempfile.TemporaryDirectory(prefix="asr-lexicon-") as tmp:
            lexicon_file = None
            if self.lexicon is not None:
                lexicon_file = Path(tmp) / "lexicon.txt"
                entries = _read_lexicon(self.lexicon, tokenizer)
                lexicon_file.write_text("".join(f"{w} {' '.join(s)}\n" for w, s in entries), encoding="utf-8")
            try:
                self._decoder = ctc_decoder(
                    lexicon=str(lexicon_file) if lexicon_file else None, tokens=tokens,
                    lm=str(self.lm) if self.lm else None, nbest=nbest, beam_size=beam_size,
                    beam_size_token=beam_size_token, beam_threshold=beam_threshold, lm_weight=lm_weight,
                    word_score=word_score, unk_score=unk_score,
                    sil_score=sil_score if self._sep is not None else 0.0, log_add=log_add,
                    blank_token=FLASHLIGHT_BLANK, sil_token=sil_token, unk_word=UNK_WORD,
                )
            except (RuntimeError, ValueError, IndexError) as err:
                what = f"language model {self.lm}" if self.lm else f"lexicon {self.lexicon}"
                lines = [line.strip() for line in str(err).splitlines() if line.strip()]  # KenLM: where, then why
                raise DecoderError(f"cannot load {what}: {lines[-1] if lines else type(err).__name__}") from None

    @torch.no_grad()
    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[Hypothesis]:
        """Best hypothesis for each utterance of a (B, T, V) log-probability batch."""
        return [nbest[0] for nbest in self.decode_nbest(log_probs, lengths)]

    @torch.no_grad()
    def decode_nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[Hypothesis]]:
        """Up to `nbest` hypotheses per utterance, best first (an empty Hypothesis when none survives)."""
        _check_inputs(log_probs, lengths, len(self.tokenizer))
        emissions = log_probs.detach().float().cpu()
        lens = _lengths(lengths, emissions)
        if self._pad_end:
            padded = torch.full((emissions.shape[0], emissions.shape[1] + 1, emissions.shape[2]), PAD_SCORE)
            padded[:, : emissions.shape[1]] = emissions
            for b, n in enumerate(lens):
                padded[b, n] = PAD_SCORE
                padded[b, n, self._sep] = 0.0
            search_lens = [n + 1 for n in lens]
            emissions = padded
        else:
            search_lens = lens
        results = self._decoder(emissions.contiguous(), torch.tensor(search_lens, dtype=torch.int32))
        out = []
        for b, hyps in enumerate(results):
            lp = emissions[b, : lens[b]].numpy()
            out.append([self._to_hypothesis(h, lp) for h in hyps] or [Hypothesis("", score=-math.inf)])
        return out

    def _to_hypothesis(self, hyp: Any, lp: np.ndarray) -> Hypothesis:
        """Our Hypothesis from a torchaudio CTCHypothesis and the utterance's (T, V) log-probs."""
        num_frames = len(lp)
        # flashlight's path has the initial state at index 0, so timestep - 1 is the frame index; tokens
        # outside [0, T) are the initial/final silence states and the appended boundary frame.
        pairs = [(int(tok), int(ts) - 1) for tok, ts in zip(hyp.tokens.tolist(), hyp.timesteps.tolist())]
        pairs = [(tok, t) for tok, t in pairs if 0 <= t < num_frames and tok != BLANK_ID]
        tokens = [tok for tok, _ in pairs]
        starts = [t for _, t in pairs]
        ends, peaks = [], []
        for k, (tok, start) in enumerate(pairs):
            limit = starts[k + 1] if k + 1 < len(pairs) else num_frames  # exclusive
            if k + 1 < len(pairs) and tokens[k + 1] == tok:
                limit -= 1  # a repeated token needs a blank in between
            end = _best_run_end(lp[:, tok], lp[:, BLANK_ID], start, max(limit, start + 1))
            ends.append(end)
            peaks.append(float(np.exp(lp[start : end + 1, tok].max())))
        return _hypothesis(self.tokenizer, self.frame_seconds, tokens, starts, ends, peaks, hyp.score)


def _best_run_end(token_lp: np.ndarray, blank_lp: np.ndarray, start: int, limit: int) -> int:
    """Last frame e in [start, limit) maximizing sum(token_lp[start..e]) + sum(blank_lp[e+1..limit-1])."""
    tok = np.cumsum(token_lp[start:limit], dtype=np.float64)
    blank_tail = np.concatenate([np.cumsum(blank_lp[start:limit][::-1], dtype=np.float64)[::-1][1:], [0.0]])
    return start + int(np.argmax(tok + blank_tail))


def resolve_bundled(key: str, value: str | os.PathLike | None) -> str | os.PathLike | None:
    """`decoder.lm` / `decoder.lexicon` as a path: "bundled" names the file shipped in asr/assets."""
    if value != BUNDLED:
        return value
    path = BUNDLED_FILES[key]
    if not path.is_file():
        raise DecoderError(f"decoder.{key}=bundled: {path} is not in this install; pass decoder.lm=PATH "
                           "decoder.lexicon=PATH (tools/build_lm.py), or decoder.lm=null decoder.lexicon=null")
    return path


def resolve_auto(cfg: Mapping[str, Any], bundled_model: bool) -> dict[str, Any]:
    """`decoder=auto` made concrete: beam search with `cfg`'s options for the bundled model (which ships its
    LM and lexicon) or when `decoder.lm` / `decoder.lexicon` were pointed away from the bundled files; greedy
    otherwise. Any other decoder config is returned as it is."""
    cfg = dict(cfg)
    if cfg.get("name") != AUTO:
        return cfg
    if bundled_model or any(cfg.get(key) != BUNDLED for key in ("lm", "lexicon")):
        return {**cfg, "name": "beam"}
    return {"name": "greedy"}


def build_decoder(
    cfg: Mapping[str, Any], tokenizer: Tokenizer, frame_seconds: float
) -> GreedyDecoder | BeamSearchDecoder:
    """A decoder from the `decoder` config group (conf/decoder/greedy.yaml or beam.yaml)."""
    kind = cfg.get("name")
    if kind not in DECODER_NAMES:
        raise DecoderError(f"decoder.name must be one of {DECODER_NAMES}, got {kind!r}")
    known = GREEDY_KEYS if kind == "greedy" else BEAM_KEYS
    unknown = sorted(set(cfg.keys()) - known)
    if unknown:
        raise DecoderError(f"unknown {kind} decoder option(s): {', '.join(unknown)}")
    if kind == "greedy":
        return GreedyDecoder(tokenizer, frame_seconds)
    missing = sorted(known - set(cfg.keys()))
    if missing:
        raise DecoderError(f"beam decoder config lacks: {', '.join(missing)}")
    return BeamSearchDecoder(
        tokenizer, frame_seconds,
        beam_size=int(cfg["beam_size"]),
        beam_size_token=None if cfg["beam_size_token"] is None else int(cfg["beam_size_token"]),
        beam_threshold=float(cfg["beam_threshold"]),
        lm=resolve_bundled("lm", cfg["lm"]), lexicon=resolve_bundled("lexicon", cfg["lexicon"]),
        lm_weight=float(cfg["lm_weight"]), word_score=float(cfg["word_score"]),
        unk_score=float(cfg["unk_score"]), sil_score=float(cfg["sil_score"]),
        log_add=bool(cfg["log_add"]), nbest=int(cfg["nbest"]),
    )
