"""Text: English normalization (the same function for training targets and scoring) and tokenizers.

`normalize_text` turns written English into the spoken form the model is trained to emit:
lowercase a–z, apostrophes and single spaces, with numbers, ordinals, percentages and
currency spelled out. `CharTokenizer` maps that alphabet to ids with the CTC blank at 0;
`SentencePieceTokenizer` is the optional BPE alternative.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import torch
from num2words import num2words

from asr.files import atomic_path, write_text_atomic

BLANK = "<blank>"
BLANK_ID = 0
CHARS = " abcdefghijklmnopqrstuvwxyz'"  # ids 1..28; space is the word separator

_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents")}
_CURRENCY_RE = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{1,2}))?\b")
_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_DECIMAL_RE = re.compile(r"\b(\d+)\.(\d+)\b")
_NUMBER_RE = re.compile(r"\d[\d,]*")
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at "}


def _number_words(digits: str) -> str:
    digits = digits.replace(",", "")
    value = int(digits)
    if len(digits) == 4 and 1100 <= value <= 2099 and value % 100 != 0 or 2000 < value < 2010:
        return num2words(value, lang="en", to="year")  # 1984 → nineteen eighty-four
    return num2words(value, lang="en")


def _currency_words(match: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[match.group(1)]
    whole = int(match.group(2).replace(",", ""))
    words = f"{_number_words(str(whole))} {one if whole == 1 else many}"
    if match.group(3):
        cents = int(match.group(3).ljust(2, "0"))
        if cents:
            words += f" {num2words(cents, lang='en')} {sub_one if cents == 1 else sub_many}"
    return f" {words} "


def normalize_text(text: str) -> str:
    """Spoken-form English: lowercase letters, apostrophes inside words, single spaces, numbers as words."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("’", "'").replace("‘", "'")
    text = _CURRENCY_RE.sub(_currency_words, text)
    text = _PERCENT_RE.sub(lambda m: f" {m.group(1)} percent ", text)
    text = _ORDINAL_RE.sub(lambda m: f" {num2words(int(m.group(1)), lang='en', to='ordinal')} ", text)
    text = _DECIMAL_RE.sub(lambda m: f" {_number_words(m.group(1))} point {' '.join(num2words(int(d)) for d in m.group(2))} ", text)
    text = _NUMBER_RE.sub(lambda m: f" {_number_words(m.group(0))} ", text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = text.lower()
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # keep only apostrophes inside words
    return " ".join(text.split())


def letters_not_spelled(text: str) -> list[str]:
    """Letters of `text` that `normalize_text` cannot spell in a-z and would drop (ß, ø, æ, Cyrillic, ...), in
    order of first appearance. Accented Latin letters (é, ñ) are spelled without their accents, so not listed."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    found = dict.fromkeys(c for c in stripped if c.isalpha() and not "a" <= c.lower() <= "z")
    return list(found)


class CharTokenizer:
    """Characters of the normalized alphabet; id 0 is the CTC blank."""

    kind = "char"

    def __init__(self, chars: str = CHARS) -> None:
        self.vocab = [BLANK, *chars]
        self._ids = {c: i for i, c in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Ids of a normalized string. Raises ValueError on a character outside the alphabet."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the tokenizer's alphabet; normalize the text first") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids (blanks are dropped; no CTC collapsing here)."""
        return "".join(self.vocab[i] for i in ids if i != BLANK_ID)

    def to_dict(self) -> dict:
        """Plain-type description for a model bundle."""
        return {"kind": self.kind, "chars": "".join(self.vocab[1:])}


class SentencePieceTokenizer:
    """SentencePiece BPE units; id 0 is the CTC blank (SentencePiece ids are shifted by one)."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece as spm

        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab = [BLANK] + [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 256) -> SentencePieceTokenizer:
        """Train a BPE model on normalized texts."""
        import io

        import sentencepiece as spm

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)), model_writer=model, vocab_size=vocab_size, model_type="bpe",
            character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2,
        )
        return cls(model.getvalue())

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Ids of a normalized string."""
        return [i + 1 for i in self._sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids (blanks dropped)."""
        return self._sp.decode([i - 1 for i in ids if i != BLANK_ID])

    def to_dict(self) -> dict:
        """Plain-type description for a model bundle (the model proto as a uint8 tensor)."""
        return {"kind": self.kind, "model_proto": torch.frombuffer(bytearray(self.model_proto), dtype=torch.uint8)}


Tokenizer = CharTokenizer | SentencePieceTokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild a tokenizer from `to_dict()` output."""
    if d["kind"] == "char":
        return CharTokenizer(d["chars"])
    if d["kind"] == "sentencepiece":
        return SentencePieceTokenizer(bytes(d["model_proto"].tolist()))
    raise ValueError(f"unknown tokenizer kind {d['kind']!r}")


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike) -> None:
    """Write a character tokenizer as JSON, or a SentencePiece one as its .model file."""
    path = Path(path)
    if isinstance(tokenizer, CharTokenizer):
        write_text_atomic(path, json.dumps(tokenizer.to_dict()) + "\n")
    else:
        with atomic_path(path) as tmp:
            tmp.write_bytes(tokenizer.model_proto)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer written by `save_tokenizer`."""
    data = Path(path).read_bytes()
    try:
        return tokenizer_from_dict(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return SentencePieceTokenizer(data)
