import pytest

from asr.text import (BLANK_ID, CharTokenizer, SentencePieceTokenizer, letters_not_spelled, load_tokenizer, normalize_text,
                      save_tokenizer)


@pytest.mark.parametrize(
    "written,spoken",
    [
        ("Hello, World!", "hello world"),
        ("It cost $5.50.", "it cost five dollars fifty cents"),
        ("£1", "one pound"),
        ("The 21st century", "the twenty first century"),
        ("50% off", "fifty percent off"),
        ("In 1984 we had 3 cats", "in nineteen eighty four we had three cats"),
        ("1,000,000 people", "one million people"),
        ("pi is 3.14", "pi is three point one four"),
        ("Don't 'quote' me", "don't quote me"),
        ("Café  &   bar", "cafe and bar"),
        ("rock-and-roll", "rock and roll"),
        ("   ", ""),
    ],
)
def test_normalize(written, spoken):
    assert normalize_text(written) == spoken


def test_normalize_is_idempotent():
    s = normalize_text("The 3rd of May, 2021: $12.05 & 7% more!")
    assert normalize_text(s) == s
    assert set(s) <= set(" abcdefghijklmnopqrstuvwxyz'")


def test_letters_not_spelled():
    assert letters_not_spelled("Café, naïve señor") == []  # accents come off: "cafe naive senor"
    assert letters_not_spelled("Søren went to Straße 5 in Москва, Søren") == ["ø", "ß", "М", "о", "с", "к", "в", "а"]
    assert normalize_text("Søren") == "s ren"  # what the check guards against


def test_char_tokenizer_round_trip(tmp_path):
    tok = CharTokenizer()
    assert tok.vocab[BLANK_ID] == "<blank>" and len(tok) == 29
    text = "don't stop me now"
    ids = tok.encode(text)
    assert BLANK_ID not in ids and tok.decode(ids) == text
    save_tokenizer(tok, tmp_path / "tok.json")
    assert load_tokenizer(tmp_path / "tok.json").vocab == tok.vocab
    with pytest.raises(ValueError, match="not in the tokenizer's alphabet"):
        tok.encode("Hello")


def test_sentencepiece_bpe(tmp_path):
    texts = [normalize_text(t) for t in ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"]] * 30
    tok = SentencePieceTokenizer.train(texts, vocab_size=30)
    ids = tok.encode("the cat sat")
    assert BLANK_ID not in ids and tok.decode(ids) == "the cat sat"
    save_tokenizer(tok, tmp_path / "bpe.model")
    assert load_tokenizer(tmp_path / "bpe.model").encode("the dog") == tok.encode("the dog")
