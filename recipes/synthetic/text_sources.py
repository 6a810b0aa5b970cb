"""English sentences for the synthetic corpus: Debian's fortunes, WordNet's example sentences, the KJV Bible.

Every passage is split into sentences, filtered to prose that a TTS engine reads the way it is
written (no code, markup, acronyms or abbreviations), and passed through `asr.text.normalize_text`.
The normalized text is both what the engine is given and the transcript, so they cannot disagree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from asr.text import normalize_text

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
BIBLE_COMMAND = "bible"  # the reader from Debian's bible-kjv package; its text is in bible-kjv-text
BIBLE_RANGE = "gen1:1-rev22:21"  # the whole book
FORTUNE_SKIP = {"ascii-art", "translate-me"}  # pictures and non-English text
SOURCES = ("fortunes", "wordnet", "kjv")
INSTALL_HINT = {
    "fortunes": "apt-get install fortunes",
    "wordnet": "apt-get install wordnet-base",
    "kjv": "apt-get install bible-kjv bible-kjv-text",
}

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[.!?;:][\"')\]])\s+")
_ATTRIBUTION = re.compile(r"^\s*--\s")  # "\t\t-- Mark Twain"
_NUMBERING = re.compile(r"^\s*\(?\d+[).]\s+")  # "(1) ..." or "2. ..." list items
_BIBLE_REF = re.compile(r"^[1-3]?[A-Za-z]+\d+:\d+\s+")  # "Ge1:1 " at the start of each verse
_WORDNET_EXAMPLE = re.compile(r'"([^"]+)"')
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "`": "'", "—": " - ", "–": " - "})
_ALLOWED = re.compile(r"^[A-Za-z0-9 .,;:!?'\"()\-$%&]+$")  # anything else (code, markup, symbols) drops it
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")  # "FBI", "VIII": engines spell or guess them, the transcript would not
_ONE_LETTER_WORDS = {"a", "i", "o"}


@dataclass(frozen=True)
class Sentence:
    """A normalized sentence and the corpus it came from."""

    text: str
    source: str


def fortune_passages(folder: Path = FORTUNES_DIR) -> Iterator[str]:
    """Each fortune (the '%'-separated entries of every file), without attribution lines."""
    for path in sorted(folder.iterdir()):
        if path.suffix or path.is_symlink() or not path.is_file() or path.name in FORTUNE_SKIP:
            continue  # the .dat indexes and .u8 links
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            lines = [_NUMBERING.sub("", line) for line in entry.splitlines() if not _ATTRIBUTION.match(line)]
            passage = " ".join(" ".join(lines).split())
            if passage:
                yield passage


def wordnet_passages(folder: Path = WORDNET_DIR) -> Iterator[str]:
    """The quoted usage examples in WordNet's glosses (data.noun, data.verb, data.adj, data.adv)."""
    for part in ("noun", "verb", "adj", "adv"):
        with (folder / f"data.{part}").open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # the licence header
                yield from _WORDNET_EXAMPLE.findall(line.split(" | ", 1)[1])


def bible_passages(command: str = BIBLE_COMMAND) -> Iterator[str]:
    """The verses of the King James Bible, read with the `bible` program."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([command, "-f", BIBLE_RANGE], capture_output=True, text=True, check=True, env=env).stdout
    verse: list[str] = []
    for line in out.splitlines():
        if _BIBLE_REF.match(line) and verse:
            yield " ".join(verse)
            verse = []
        verse.append(_BIBLE_REF.sub("", line).strip())
    if verse:
        yield " ".join(verse)


def split_sentences(passage: str) -> list[str]:
    """Sentences and clauses of a passage, cut after . ! ? ; : (and any closing quote or bracket)."""
    return [s.strip() for s in _SENTENCE_END.split(passage) if s.strip()]


def clean_sentence(raw: str, min_words: int, max_words: int) -> str | None:
    """The normalized text of `raw`, or None when it is not plain prose of min_words..max_words words."""
    text = raw.translate(_QUOTES)
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = " ".join(text.split())
    if not text or not _ALLOWED.match(text) or _ACRONYM.search(text):
        return None
    spoken = normalize_text(text)
    words = spoken.split()
    if not min_words <= len(words) <= max_words:
        return None
    for word in words:
        letters = word.replace("'", "")
        if len(letters) == 1 and letters not in _ONE_LETTER_WORDS:
            return None  # "e g", "q", stray initials
        if not re.search(r"[aeiouy]", letters):
            return None  # "mr", "dr", "st", "hmm": the engine would not say the letters written
    return spoken


def source_readers(fortunes_dir: Path, wordnet_dir: Path, bible_command: str) -> dict[str, Callable[[], Iterator[str]]]:
    """Passage readers by source name."""
    return {
        "fortunes": lambda: fortune_passages(fortunes_dir),
        "wordnet": lambda: wordnet_passages(wordnet_dir),
        "kjv": lambda: bible_passages(bible_command),
    }


def source_problem(name: str, fortunes_dir: Path, wordnet_dir: Path, bible_command: str) -> str | None:
    """Why a text source cannot be read here (None when it can)."""
    if name == "fortunes" and not fortunes_dir.is_dir():
        return f"{fortunes_dir} not found ({INSTALL_HINT[name]})"
    if name == "wordnet" and not (wordnet_dir / "data.noun").is_file():
        return f"{wordnet_dir}/data.noun not found ({INSTALL_HINT[name]})"
    if name == "kjv" and shutil.which(bible_command) is None:
        return f"the '{bible_command}' reader is not installed ({INSTALL_HINT[name]})"
    if name not in SOURCES:
        return f"unknown text source (known: {', '.join(SOURCES)})"
    return None


def load_sentences(
    sources: list[str],
    min_words: int,
    max_words: int,
    fortunes_dir: Path = FORTUNES_DIR,
    wordnet_dir: Path = WORDNET_DIR,
    bible_command: str = BIBLE_COMMAND,
) -> tuple[list[Sentence], dict[str, str]]:
    """Deduplicated normalized sentences, sorted by text, and the sources that could not be read (name → why).

    A sentence found in several sources is credited to the first source in `sources`.
    """
    readers = source_readers(fortunes_dir, wordnet_dir, bible_command)
    seen: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in sources:
        problem = source_problem(name, fortunes_dir, wordnet_dir, bible_command)
        if problem:
            missing[name] = problem
            continue
        try:
            texts = [clean_sentence(raw, min_words, max_words) for p in readers[name]() for raw in split_sentences(p)]
        except (OSError, subprocess.CalledProcessError) as err:
            missing[name] = f"could not be read ({err})"
            continue
        for text in texts:
            if text and text not in seen:
                seen[text] = name
    return [Sentence(text, seen[text]) for text in sorted(seen)], missing
