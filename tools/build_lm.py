#!/usr/bin/env python3
"""Train a KenLM word n-gram language model and a lexicon for `decoder=beam`.

    python tools/build_lm.py corpus.txt out/lm [--order 4] [--prune 0 1 1] [--discount_fallback]
    python tools/build_lm.py data/commonvoice/train.jsonl out/lm     # a manifest: its transcripts

Every line of the text is normalized with `asr.text.normalize_text` (the same spoken form the
acoustic model emits). Writes, in the output folder:

    lm.arpa      the model in ARPA format (KenLM lmplz, modified Kneser-Ney)
    lm.bin       the same model in KenLM's binary format (build_binary; loads much faster)
    lexicon.txt  "word w o r d |" for every word of the text, as torchaudio's ctc_decoder reads it

KenLM's `lmplz` and `build_binary` are not published as binaries on PyPI or Debian, so the first run
builds them from the PyPI `kenlm` source distribution (pinned below) with cmake into a cache folder,
`$ASR_KENLM_DIR` or ~/.cache/asr/kenlm, and every later run reuses it (about a minute on 2 cores). When
ASR_KENLM_DIR is unset and both programs are already on PATH, those are used. The build needs a C++
compiler, cmake, Boost (program_options, system, thread, unit_test_framework) and optionally zlib, bzip2
and lzma headers (compressed input): `tools/install.sh dev` installs them all.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))

from asr.data import ManifestError, read_manifest  # noqa: E402
from asr.text import CHARS, normalize_text  # noqa: E402

KENLM_SDIST = "kenlm==0.3.0"       # PyPI source distribution with the full C++ source and CMakeLists
KENLM_DIR_ENV = "ASR_KENLM_DIR"
DEFAULT_KENLM_DIR = Path("~/.cache/asr/kenlm")
KENLM_PROGRAMS = ("lmplz", "build_binary")
KENLM_MIN_ORDER = 2                # build_binary rejects unigram models
KENLM_MAX_ORDER = 6                # compiled into our build (flashlight-text loads 6-gram models too)
DEFAULT_ORDER = 4
DEFAULT_JOBS = 2
DEFAULT_MEMORY = "1G"              # lmplz sorting memory (-S, GNU sort syntax); larger corpora spill to disk
WORD_SEPARATOR = "|"
ARPA_NAME, BINARY_NAME, LEXICON_NAME = "lm.arpa", "lm.bin", "lexicon.txt"
LOG_TAIL_LINES = 15


class BuildLMError(Exception):
    """An expected failure (bad input, missing build tools, a failed KenLM step); printed as one line."""


@dataclass
class LMFiles:
    """Paths written by `build_lm`, and the corpus size."""

    arpa: Path
    binary: Path
    lexicon: Path
    sentences: int
    words: int
    vocabulary: int


def kenlm_dir() -> Path:
    """The KenLM cache folder: $ASR_KENLM_DIR, else ~/.cache/asr/kenlm."""
    return Path(os.environ.get(KENLM_DIR_ENV) or DEFAULT_KENLM_DIR).expanduser()


def find_kenlm(build: bool = True, jobs: int = DEFAULT_JOBS) -> dict[str, Path]:
    """Paths of lmplz and build_binary: the cache folder's, PATH's (when ASR_KENLM_DIR is unset), or a new build."""
    cache = kenlm_dir()
    cached = {p: cache / "bin" / p for p in KENLM_PROGRAMS}
    if all(os.access(path, os.X_OK) for path in cached.values()):
        return cached
    if not os.environ.get(KENLM_DIR_ENV):
        on_path = {p: shutil.which(p) for p in KENLM_PROGRAMS}
        if all(on_path.values()):
            return {p: Path(path) for p, path in on_path.items()}
    if not build:
        raise BuildLMError(f"KenLM programs not found in {cache / 'bin'} or on PATH")
    build_kenlm(cache, jobs)
    return cached


def _run_logged(cmd: list[str], log: TextIO) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, cmd)


def build_kenlm(cache: Path, jobs: int = DEFAULT_JOBS) -> float:
    """Build lmplz and build_binary from the PyPI kenlm sdist into `cache`/bin; returns the seconds taken.

    A lock file makes concurrent callers wait for one build instead of racing.
    """
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        raise BuildLMError(f"building KenLM needs {' and '.join(missing)} (apt-get install build-essential cmake "
                           "libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev "
                           "zlib1g-dev libbz2-dev liblzma-dev, or run tools/install.sh dev)")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(os.access(cache / "bin" / p, os.X_OK) for p in KENLM_PROGRAMS):
            return 0.0  # another process built it while we waited
        began = time.monotonic()
        log_path = cache / "build.log"
        print(f"building KenLM ({KENLM_SDIST}) into {cache} with {jobs} jobs; log: {log_path}", file=sys.stderr)
        with open(log_path, "w") as log, tempfile.TemporaryDirectory(prefix="kenlm-", dir=cache) as tmp:
            tmp = Path(tmp)
            try:
                # --no-binary for kenlm only: build requirements (cmake, setuptools) still come as wheels.
                _run_logged([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm",
                             "--dest", str(tmp), KENLM_SDIST], log)
                sdist = next(tmp.glob("kenlm-*.tar.gz"))
                with tarfile.open(sdist) as tar:
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse unsafe members
                        tar.extractall(tmp, filter="data")
                    else:
                        tar.extractall(tmp)
                source = next(p for p in tmp.iterdir() if p.is_dir() and (p / "CMakeLists.txt").exists())
                build = tmp / "build"
                _run_logged(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                             f"-DKENLM_MAX_ORDER={KENLM_MAX_ORDER}"], log)
                _run_logged(["cmake", "--build", str(build), "--target", *KENLM_PROGRAMS, "-j", str(jobs)], log)
            except (subprocess.CalledProcessError, StopIteration, tarfile.TarError) as err:
                log.flush()
                tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-LOG_TAIL_LINES:])
                raise BuildLMError(f"building KenLM failed ({err}); see {log_path}:\n{tail}") from None
            (cache / "bin").mkdir(exist_ok=True)
            for program in KENLM_PROGRAMS:  # copy, then rename: an interrupted copy never looks finished
                shutil.copy2(build / "bin" / program, cache / "bin" / f"{program}.partial")
                os.replace(cache / "bin" / f"{program}.partial", cache / "bin" / program)
        seconds = time.monotonic() - began
        print(f"built KenLM in {seconds:.0f} s", file=sys.stderr)
        return seconds


def _lines(text: Path) -> Iterator[str]:
    """The sentences of a text file, a line each, or of a manifest (`.jsonl`): its transcripts."""
    if text.suffix == ".jsonl":
        try:
            yield from (entry.text for entry in read_manifest(text))
        except ManifestError as err:
            raise BuildLMError(str(err)) from None
        return
    with open(text, encoding="utf-8") as src:
        yield from src


def normalize_corpus(text: Path, out: Path) -> tuple[int, Counter[str]]:
    """Write `text` (or a manifest's transcripts) normalized line by line to `out` (empty lines dropped); returns
    (sentences, word counts)."""
    if not text.is_file():
        raise BuildLMError(f"text file {text} not found" if not text.exists() else f"{text} is not a file")
    counts: Counter[str] = Counter()
    sentences = 0
    try:
        with open(out, "w", encoding="utf-8") as dst:
            for line in _lines(text):
                line = normalize_text(line)
                if line:
                    dst.write(line + "\n")
                    counts.update(line.split())
                    sentences += 1
    except UnicodeDecodeError as err:
        raise BuildLMError(f"{text} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not counts:
        raise BuildLMError(f"{text} has no words after normalization")
    return sentences, counts


def write_lexicon(words: list[str], path: Path) -> None:
    """One line per word: the word, then its characters separated by spaces, then '|'."""
    alphabet = set(CHARS)
    with open(path, "w", encoding="utf-8") as f:
        for word in words:
            if not set(word) <= alphabet:
                raise BuildLMError(f"word {word!r} has characters outside the tokenizer's alphabet")
            f.write(f"{word} {' '.join(word)} {WORD_SEPARATOR}\n")


def _kenlm_message(stderr: str) -> str:
    """The human-readable part of a KenLM error: the lines after "... threw SomeException ...", else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and line.strip() != "ERROR"]
    threw = [i for i, line in enumerate(lines) if " threw " in line]
    if threw and threw[-1] + 1 < len(lines):
        return " ".join(lines[threw[-1] + 1 :])
    return lines[-1] if lines else ""


def _run_kenlm(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = _kenlm_message(result.stderr) or f"exit status {result.returncode}"
        if "Kneser-Ney discounts" in detail and "discount_fallback" not in detail:
            detail += " (for a tiny text, pass --discount_fallback)"
        raise BuildLMError(f"{what} failed: {detail}")


def build_lm(
    text: str | os.PathLike,
    out_dir: str | os.PathLike,
    order: int = DEFAULT_ORDER,
    prune: list[int] | None = None,
    discount_fallback: bool = False,
    memory: str = DEFAULT_MEMORY,
    jobs: int = DEFAULT_JOBS,
    quantize: int | None = None,
) -> LMFiles:
    """Normalize `text`, train an `order`-gram KenLM model, write ARPA, binary and lexicon into `out_dir`.

    `quantize` (1-25 bits) stores the binary as a trie with quantized probabilities and backoffs:
    several times smaller than the default probing hash table, slightly slower to query."""
    text, out_dir = Path(text), Path(out_dir)
    if quantize is not None and not 1 <= quantize <= 25:
        raise BuildLMError(f"--quantize must be between 1 and 25 bits, got {quantize}")
    if not KENLM_MIN_ORDER <= order <= KENLM_MAX_ORDER:
        raise BuildLMError(f"--order must be between {KENLM_MIN_ORDER} and {KENLM_MAX_ORDER}, got {order}")
    if prune and (any(p < 0 for p in prune) or prune != sorted(prune)):
        raise BuildLMError(f"--prune thresholds must be non-negative and non-decreasing, got {prune}")
    out_dir.mkdir(parents=True, exist_ok=True)
    arpa, binary, lexicon = out_dir / ARPA_NAME, out_dir / BINARY_NAME, out_dir / LEXICON_NAME
    with tempfile.TemporaryDirectory(prefix="asr-lm-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        sentences, counts = normalize_corpus(text, corpus)
        programs = find_kenlm(jobs=jobs)
        cmd = [str(programs["lmplz"]), "--order", str(order), "--text", str(corpus), "--arpa", str(arpa),
               "--memory", memory, "--temp_prefix", str(Path(tmp) / "lmplz")]
        if prune:
            cmd += ["--prune", *map(str, prune)]
        if discount_fallback:
            cmd.append("--discount_fallback")
        _run_kenlm(cmd, "lmplz")
        layout = ["-q", str(quantize), "-b", str(quantize), "trie"] if quantize else []
        _run_kenlm([str(programs["build_binary"]), *layout, str(arpa), str(binary)], "build_binary")
    write_lexicon(sorted(counts), lexicon)
    return LMFiles(arpa, binary, lexicon, sentences, sum(counts.values()), len(counts))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", type=Path, help="training text, one sentence per line (normalized here), or a "
                                                "manifest (.jsonl) whose transcripts are the text")
    parser.add_argument("out_dir", type=Path, help="folder for lm.arpa, lm.bin and lexicon.txt")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER, help=f"n-gram order (default {DEFAULT_ORDER})")
    parser.add_argument("--prune", type=int, nargs="+", metavar="N",
                        help="drop n-grams seen at most N times, one threshold per order from unigrams "
                             "(non-decreasing, e.g. 0 0 1; the last repeats for higher orders)")
    parser.add_argument("--discount_fallback", action="store_true",
                        help="fixed discounts where Kneser-Ney estimation fails (tiny or repetitive texts)")
    parser.add_argument("--memory", default=DEFAULT_MEMORY, help=f"KenLM sorting memory (default {DEFAULT_MEMORY})")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                        help=f"compile jobs for the one-time KenLM build (default {DEFAULT_JOBS})")
    parser.add_argument("--quantize", type=int, metavar="BITS",
                        help="binary as a trie with BITS-bit probabilities and backoffs (e.g. 8: several times smaller)")
    args = parser.parse_args(argv)
    try:
        files = build_lm(args.text, args.out_dir, args.order, args.prune, args.discount_fallback, args.memory,
                         args.jobs, args.quantize)
    except BuildLMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{files.sentences} sentences, {files.words} words, vocabulary {files.vocabulary}: "
          f"{files.arpa}, {files.binary}, {files.lexicon}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
