"""Decoding on hand-built emission matrices with known answers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from asr import decoding
from asr.decoding import BeamSearchDecoder, DecoderError, GreedyDecoder, Hypothesis, build_decoder
from asr.text import CharTokenizer, SentencePieceTokenizer
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
TOK = CharTokenizer()
FRAME = 0.04  # seconds per output frame in these tests


def token_id(symbol: str, tok=TOK) -> int:
    """'-' is the blank, '_' the space, anything else a vocabulary entry."""
    if symbol == "-":
        return 0
    return tok.vocab.index(" " if symbol == "_" else symbol)


def emissions(path, p: float = 0.9, tok=TOK) -> torch.Tensor:
    """(T, V) log-probs: frame t gives probability p (or path[t][1]) to path[t], the rest spread evenly.

    `path` is a string of symbols, or a list of symbols / (symbol, probability) pairs."""
    frames = [(s, p) if isinstance(s, str) else s for s in path]
    probs = torch.empty(len(frames), len(tok), dtype=torch.float64)
    for t, (symbol, prob) in enumerate(frames):
        probs[t] = (1 - prob) / (len(tok) - 1)
        probs[t, token_id(symbol, tok)] = prob
    return probs.log().float()


def batch(*mats: torch.Tensor, pad_symbol: str = "z", tok=TOK) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (T, V) matrices into (B, T, V) with confident `pad_symbol` frames that must be ignored."""
    longest = max(m.shape[0] for m in mats)
    pad = emissions([pad_symbol] * longest, 0.99, tok=tok)
    out = torch.stack([torch.cat([m, pad[: longest - m.shape[0]]]) for m in mats])
    return out, torch.tensor([m.shape[0] for m in mats])


def greedy(path, **kw) -> Hypothesis:
    x, n = batch(emissions(path, **kw))
    return GreedyDecoder(TOK, FRAME).decode(x, n)[0]


@pytest.mark.parametrize(
    "path,text",
    [
        ("cc-aa-t", "cat"),          # repeats merge, blanks drop
        ("a-a", "aa"),                # a blank separates two identical letters
        ("aa", "a"),                  # ... and without one they are a single letter
        ("hel-lo", "hello"),
        ("hello", "helo"),
        ("---", ""),                  # only blanks: empty transcript
        ("__the__-_cat_", "the cat"),  # separators at the edges and doubled collapse to one space
        ("d-on't", "don't"),
    ],
)
def test_greedy_collapse_rules(path, text):
    hyp = greedy(path)
    assert hyp.text == text
    assert [w.word for w in hyp.words] == text.split()


def test_greedy_tokens_and_score():
    hyp = greedy("cc-a-tt", p=0.5)
    assert hyp.tokens == [token_id("c"), token_id("a"), token_id("t")]
    assert hyp.score == pytest.approx(7 * math.log(0.5), abs=1e-5)  # log-probability of the best path


def test_greedy_batch_with_different_lengths():
    a, b, c = emissions("th-e_cat"), emissions("s-a-t"), emissions("")
    x, n = batch(a, b, c)
    hyps = GreedyDecoder(TOK, FRAME).decode(x, n)
    assert [h.text for h in hyps] == ["the cat", "sat", ""]  # padding frames ('z') are ignored
    assert hyps[2].words == [] and hyps[2].tokens == []
    alone = GreedyDecoder(TOK, FRAME).decode(b[None], torch.tensor([b.shape[0]]))[0]
    assert alone == hyps[1]
    assert [h.text for h in GreedyDecoder(TOK, FRAME).decode(x)] == ["the cat", "satz", "z"]  # no lengths: all frames


def test_greedy_timestamps_and_confidences():
    # frame:    0         1          2          3          4          5          6          7          8          9
    path = [("-", .9), ("h", .8), ("h", .6), ("-", .7), ("i", .5), ("_", .9), ("-", .9), ("y", .7), ("o", .9),
            ("-", .9)]
    hyp = GreedyDecoder(TOK, 0.02).decode(emissions(path)[None], torch.tensor([10]))[0]
    assert hyp.text == "hi yo"
    hi, yo = hyp.words
    # start = first frame of the first token; end = last frame of the last token + 1
    assert (hi.word, hi.start, hi.end) == ("hi", pytest.approx(0.02), pytest.approx(0.10))
    assert (yo.word, yo.start, yo.end) == ("yo", pytest.approx(0.14), pytest.approx(0.18))
    # confidence = mean over the word's tokens of the token's peak frame posterior
    assert hi.confidence == pytest.approx((0.8 + 0.5) / 2, abs=1e-6)
    assert yo.confidence == pytest.approx((0.7 + 0.9) / 2, abs=1e-6)


def test_greedy_on_gpu_layout_inputs():
    """float16 input and a non-contiguous batch give the same answer."""
    x, n = batch(emissions("c-at"), emissions("d-og"))
    ref = GreedyDecoder(TOK, FRAME).decode(x, n)
    got = GreedyDecoder(TOK, FRAME).decode(x.half().transpose(0, 1).contiguous().transpose(0, 1), n)
    assert [h.text for h in got] == [h.text for h in ref] == ["cat", "dog"]


def test_decoder_input_checks():
    with pytest.raises(ValueError, match="classes"):
        GreedyDecoder(TOK, FRAME).decode(torch.zeros(1, 3, 5), torch.tensor([3]))
    with pytest.raises(ValueError, match="lengths"):
        GreedyDecoder(TOK, FRAME).decode(torch.zeros(2, 3, len(TOK)), torch.tensor([3]))
    with pytest.raises(ValueError, match="frame_seconds"):
        GreedyDecoder(TOK, 0)


@pytest.fixture(scope="module")
def bpe() -> SentencePieceTokenizer:
    texts = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the bat flew at night"] * 30
    return SentencePieceTokenizer.train(texts, vocab_size=30)


def bpe_emissions(tok: SentencePieceTokenizer, text: str, p: float = 0.9) -> torch.Tensor:
    """Each piece of `text` for one frame, a blank after it."""
    path = []
    for i in tok.encode(text):
        path += [(tok.vocab[i], p), ("-", p)]
    return emissions(path, tok=tok)


def test_greedy_sentencepiece_words(bpe):
    assert [bpe.vocab[i] for i in bpe.encode("the dog sat")] == ["▁the", "▁d", "og", "▁s", "at"]
    x = bpe_emissions(bpe, "the dog sat")  # piece k on frame 2k, blanks between
    hyp = GreedyDecoder(bpe, FRAME).decode(x[None], torch.tensor([x.shape[0]]))[0]
    assert hyp.text == "the dog sat"
    assert [(w.word, round(w.start / FRAME), round(w.end / FRAME)) for w in hyp.words] == [
        ("the", 0, 1), ("dog", 2, 5), ("sat", 6, 9)]
    assert all(w.confidence == pytest.approx(0.9, abs=1e-6) for w in hyp.words)
    # a lone '▁' piece starts a word and carries no letters
    assert [bpe.vocab[i] for i in bpe.encode("a bat")] == ["▁a", "▁", "b", "at"]
    x = bpe_emissions(bpe, "a bat")
    hyp = GreedyDecoder(bpe, FRAME).decode(x[None], torch.tensor([x.shape[0]]))[0]
    assert [(w.word, round(w.start / FRAME), round(w.end / FRAME)) for w in hyp.words] == [("a", 0, 1), ("bat", 2, 7)]


# ---------------------------------------------------------------- beam search (flashlight-text)

def same_words(a: Hypothesis, b: Hypothesis) -> bool:
    return a.text == b.text and len(a.words) == len(b.words) and all(
        x.word == y.word and x.start == pytest.approx(y.start) and x.end == pytest.approx(y.end)
        and x.confidence == pytest.approx(y.confidence, abs=1e-6) for x, y in zip(a.words, b.words))


def test_beam_without_lm_equals_greedy_on_peaky_emissions():
    x, n = batch(emissions("th-e__cc-a-t-_sat"), emissions("a-a_b"), emissions("--"), emissions("hel-lo_d-on't"))
    g = GreedyDecoder(TOK, FRAME).decode(x, n)
    b = BeamSearchDecoder(TOK, FRAME, beam_size=8).decode(x, n)
    assert [h.text for h in b] == ["the cat sat", "aa b", "", "hello don't"]
    for gh, bh in zip(g, b):
        assert same_words(gh, bh), (gh, bh)
        assert bh.tokens == [t for t in gh.tokens]
        assert bh.score == pytest.approx(gh.score, abs=1e-3)  # one dominant path: beam score = path log-prob


def test_beam_timestamps_with_long_runs():
    """Token runs longer than one frame: the rebuilt path matches the greedy one."""
    path = [("-", .9)] * 3 + [("h", .8)] * 4 + [("-", .9)] * 2 + [("i", .7)] * 3 + [("_", .9)] + [("o", .6)] * 2
    x = emissions(path)[None]
    g = GreedyDecoder(TOK, FRAME).decode(x, torch.tensor([x.shape[1]]))[0]
    b = BeamSearchDecoder(TOK, FRAME).decode(x, torch.tensor([x.shape[1]]))[0]
    assert g.text == "hi o" and same_words(g, b)
    assert (b.words[0].start, b.words[0].end) == (pytest.approx(3 * FRAME), pytest.approx(12 * FRAME))


def test_beam_sentencepiece_equals_greedy(bpe):
    x, n = batch(bpe_emissions(bpe, "the dog sat on the log"), bpe_emissions(bpe, "a bat"), pad_symbol="▁the", tok=bpe)
    g = GreedyDecoder(bpe, FRAME).decode(x, n)
    b = BeamSearchDecoder(bpe, FRAME, beam_size=8).decode(x, n)
    assert [h.text for h in b] == ["the dog sat on the log", "a bat"]
    assert all(same_words(gh, bh) for gh, bh in zip(g, b))


def write_lexicon(path: Path, words: list[str]) -> Path:
    path.write_text("".join(f"{w} {' '.join(w)} |\n" for w in words))
    return path


def ambiguous(second_letter: str = "s", p_second: float = 0.5, p_a: float = 0.4) -> torch.Tensor:
    """'the c?t' where the middle letter is `second_letter` (p_second) or 'a' (p_a) — acoustically close."""
    rest = (1 - p_second - p_a) / (len(TOK) - 2)
    mid = torch.full((len(TOK),), rest, dtype=torch.float64)
    mid[token_id(second_letter)], mid[token_id("a")] = p_second, p_a
    head, tail = emissions("the_c"), emissions("t")
    return torch.cat([head, mid.log().float()[None], tail])


def test_lexicon_constrains_the_output(tmp_path):
    x = ambiguous()[None]
    n = torch.tensor([x.shape[1]])
    assert GreedyDecoder(TOK, FRAME).decode(x, n)[0].text == "the cst"
    assert BeamSearchDecoder(TOK, FRAME).decode(x, n)[0].text == "the cst"  # lexicon-free: same as greedy
    lex = write_lexicon(tmp_path / "lexicon.txt", ["the", "cat", "mat"])
    hyp = BeamSearchDecoder(TOK, FRAME, lexicon=lex).decode(x, n)[0]
    assert hyp.text == "the cat"
    assert [w.word for w in hyp.words] == ["the", "cat"]
    # the chosen 'a' frame had posterior 0.4: the word's confidence is the mean of 0.9, 0.4, 0.9
    assert hyp.words[1].confidence == pytest.approx((0.9 + 0.4 + 0.9) / 3, abs=1e-6)
    assert hyp.words[1].end == pytest.approx(x.shape[1] * FRAME)  # the appended boundary frame is not counted
    # a word outside the lexicon is never emitted with unk_score=-inf. Which lexicon words fill the 'c?t' frames
    # is a tie here ('the' then blanks scores exactly as 'the the': every off-path token has the same
    # probability), so only the words are checked, not how many.
    only_the = BeamSearchDecoder(TOK, FRAME, lexicon=write_lexicon(tmp_path / "l2.txt", ["the"])).decode(x, n)[0]
    assert only_the.text.split()[0] == "the" and set(only_the.text.split()) == {"the"}


def test_lexicon_with_sentencepiece(bpe, tmp_path):
    """A character lexicon is re-spelled with the BPE pieces ('sat' → '▁s at'); words and timings as greedy."""
    x, n = batch(bpe_emissions(bpe, "the cat sat"), bpe_emissions(bpe, "a bat"), pad_symbol="▁the", tok=bpe)
    lex = write_lexicon(tmp_path / "lexicon.txt", ["the", "cat", "sat", "mat", "a", "bat"])
    got = BeamSearchDecoder(bpe, FRAME, lexicon=lex).decode(x, n)
    assert [h.text for h in got] == ["the cat sat", "a bat"]
    assert all(same_words(g, b) for g, b in zip(GreedyDecoder(bpe, FRAME).decode(x, n), got))


def test_nbest():
    x = ambiguous()[None]
    dec = BeamSearchDecoder(TOK, FRAME, nbest=3)
    nbest = dec.decode_nbest(x, torch.tensor([x.shape[1]]))[0]
    assert [h.text for h in nbest[:2]] == ["the cst", "the cat"]
    assert len(nbest) == 3 and nbest[0].score >= nbest[1].score >= nbest[2].score
    assert dec.decode(x, torch.tensor([x.shape[1]]))[0] == nbest[0]


def test_beam_errors(tmp_path, monkeypatch):
    lex = write_lexicon(tmp_path / "lexicon.txt", ["cat"])
    with pytest.raises(DecoderError, match="needs decoder.lexicon"):
        BeamSearchDecoder(TOK, FRAME, lm=tmp_path / "lm.bin")
    with pytest.raises(DecoderError, match="cannot read lexicon .*nope.txt"):
        BeamSearchDecoder(TOK, FRAME, lexicon=tmp_path / "nope.txt")
    with pytest.raises(DecoderError, match="cannot read language model"):
        BeamSearchDecoder(TOK, FRAME, lm=tmp_path / "missing.arpa", lexicon=lex)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DecoderError, match="is empty"):
        BeamSearchDecoder(TOK, FRAME, lexicon=tmp_path / "empty.txt")
    (tmp_path / "bad.txt").write_text("cat c a t |\ncafé c a f é |\n")
    with pytest.raises(DecoderError, match=r"bad.txt:2: token 'é' of 'café' is not in the tokenizer"):
        BeamSearchDecoder(TOK, FRAME, lexicon=tmp_path / "bad.txt")
    (tmp_path / "garbage.arpa").write_text("this is not a language model\n")
    with pytest.raises(DecoderError, match=r"cannot load language model .*garbage.arpa: .*\\data\\") as err:
        BeamSearchDecoder(TOK, FRAME, lm=tmp_path / "garbage.arpa", lexicon=lex)
    assert "\n" not in str(err.value)
    # flashlight-text not installed: one line with the install command
    monkeypatch.delitem(sys.modules, "torchaudio.models.decoder._ctc_decoder", raising=False)
    monkeypatch.delattr("torchaudio.models.decoder.ctc_decoder", raising=False)
    monkeypatch.delattr("torchaudio.models.decoder._ctc_decoder", raising=False)
    monkeypatch.setitem(sys.modules, "flashlight.lib.text.decoder", None)
    with pytest.raises(DecoderError, match=r"flashlight-text.*pip install flashlight-text"):
        BeamSearchDecoder(TOK, FRAME)


# ---------------------------------------------------------------- configuration

def decoder_cfg(preset: str, **overrides):
    cfg = OmegaConf.load(ROOT / "conf" / "decoder" / f"{preset}.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def test_build_decoder_from_config(tmp_path, monkeypatch):
    assert isinstance(build_decoder(decoder_cfg("greedy"), TOK, FRAME), GreedyDecoder)
    beam = build_decoder(decoder_cfg("beam", nbest=2, lm=None, lexicon=None), TOK, FRAME)
    assert isinstance(beam, BeamSearchDecoder) and beam.nbest == 2 and beam.lm is None and beam.lexicon is None
    # the default LM and lexicon are the ones shipped in the package
    beam = build_decoder(decoder_cfg("beam"), TOK, FRAME)
    assert (beam.lm, beam.lexicon) == (decoding.BUNDLED_FILES["lm"], decoding.BUNDLED_FILES["lexicon"])
    # every key of beam.yaml reaches the decoder
    seen = {}
    monkeypatch.setattr(decoding, "BeamSearchDecoder", lambda tok, fs, **kw: seen.update(kw))
    cfg = decoder_cfg("beam")
    build_decoder(cfg, TOK, FRAME)
    assert set(seen) == set(cfg.keys()) - {"name"}
    assert seen["unk_score"] == -math.inf and seen["lm"] == decoding.BUNDLED_FILES["lm"]
    with pytest.raises(DecoderError, match="unknown beam decoder option.*beam_width"):
        build_decoder(decoder_cfg("beam", beam_width=3), TOK, FRAME)
    with pytest.raises(DecoderError, match="decoder.name"):
        build_decoder(decoder_cfg("greedy", name="viterbi"), TOK, FRAME)


def test_missing_bundled_lm_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(decoding.BUNDLED_FILES, "lm", tmp_path / "absent.bin")
    with pytest.raises(DecoderError, match=r"decoder.lm=bundled: .*absent.bin is not in this install; pass decoder.lm=PATH"):
        build_decoder(decoder_cfg("beam"), TOK, FRAME)


def test_config_keys_are_commented():
    for name in ("greedy", "beam"):
        lines = (ROOT / "conf" / "decoder" / f"{name}.yaml").read_text().splitlines()
        keys = [line for line in lines if line and not line.startswith("#")]
        assert keys and all("#" in line for line in keys), name


# ---------------------------------------------------------------- with a KenLM language model

def _load_build_lm():
    return load_script("build_lm", ROOT / "tools" / "build_lm.py")


LM_TEXT = """The cat sat on the mat.
The cat ate the fish.
Look at the cat!
The cat is black and the mat is red.
A bat flew at night.
"""


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    (out / "text.txt").write_text(LM_TEXT)
    return _load_build_lm().build_lm(out / "text.txt", out / "lm", order=3, discount_fallback=True, memory="64M")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["binary", "arpa"])
def test_lm_changes_the_winner(tiny_lm, fmt):
    """Acoustically 'the bat' beats 'the cat' (0.5 vs 0.4); the LM, which saw 'the cat' often and
    'the bat' never, turns it around. Without the LM the same lexicon keeps 'the bat'."""
    x = _the_bc_at()[None]
    n = torch.tensor([x.shape[1]])
    lm = tiny_lm.binary if fmt == "binary" else tiny_lm.arpa
    assert GreedyDecoder(TOK, FRAME).decode(x, n)[0].text == "the bat"
    without = BeamSearchDecoder(TOK, FRAME, lexicon=tiny_lm.lexicon).decode(x, n)[0]
    assert without.text == "the bat"
    with_lm = BeamSearchDecoder(TOK, FRAME, lexicon=tiny_lm.lexicon, lm=lm, lm_weight=1.0).decode(x, n)[0]
    assert with_lm.text == "the cat"
    assert [w.word for w in with_lm.words] == ["the", "cat"]
    assert with_lm.words[1].confidence == pytest.approx((0.4 + 0.9 + 0.9) / 3, abs=1e-6)


def _the_bc_at() -> torch.Tensor:
    """'the ?at' with '?' = 'b' (0.5) or 'c' (0.4)."""
    rest = 0.1 / (len(TOK) - 2)
    mid = torch.full((len(TOK),), rest, dtype=torch.float64)
    mid[token_id("b")], mid[token_id("c")] = 0.5, 0.4
    return torch.cat([emissions("the_"), mid.log().float()[None], emissions("at")])
