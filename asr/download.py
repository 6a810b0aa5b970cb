"""Corpus downloads for the recipes: resumable HTTP with retries, checksums, and safe archive extraction.

Imports nothing of ours (the bottom floor). Used by `recipes/librispeech/download.py` and
`recipes/commonvoice/download.py`; the toolkit itself never downloads anything at run time.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

BLOCK = 1 << 20  # bytes per read
RETRY_WAIT = 2.0  # seconds before the first retry; doubles with every further one (at most 60)


class DownloadError(Exception):
    """A download that failed for good (after retries) or whose checksum does not match."""


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest (`md5`, `sha256`, ...) of a file, read in blocks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """Append the rest of `url` to `part`, asking for the bytes it lacks; restarts if the server ignores Range."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the partial file is already complete
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        with part.open("ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                          desc=part.name.removesuffix(".part"), mininterval=1.0) as bar:
            for block in iter(lambda: response.read(BLOCK), b""):
                f.write(block)
                bar.update(len(block))
                have += len(block)
    if total is not None and have < total:  # http.client returns b"" rather than raising when the server hangs up
        raise ConnectionError(f"connection closed after {have} of {total} bytes")


def fetch(url: str, dest: Path, checksum: str | None, algorithm: str = "md5", retries: int = 5,
          timeout: float = 60.0) -> Path:
    """Download `url` to `dest` (resuming `dest`.part) and check its `algorithm` digest; returns `dest`.

    A finished `dest` with the right checksum is kept as it is. A checksum mismatch removes the
    partial file and raises DownloadError, so the next run starts over. `checksum=None` checks
    nothing (for archives whose publisher gives no sum): a finished `dest` is then kept as it is.
    The URL may change between runs (signed links expire): the bytes already in `dest`.part are kept.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if checksum is None or file_digest(dest, algorithm) == checksum:
            return dest
        print(f"{dest}: checksum mismatch, downloading it again")
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch_once(url, part, timeout)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # HTTPException: a cut transfer
            if isinstance(err, urllib.error.HTTPError) and 400 <= err.code < 500 and err.code != 408:
                raise DownloadError(f"{_shown(url)}: HTTP {err.code} {err.reason}") from None
            if attempt == retries:
                raise DownloadError(f"{_shown(url)}: failed after {retries} attempts ({err}); run again to resume") from None
            have = part.stat().st_size if part.exists() else 0
            print(f"{_shown(url)}: {err}; retrying ({attempt}/{retries - 1}) from byte {have}")
            time.sleep(min(RETRY_WAIT * 2 ** (attempt - 1), 60))
    if checksum is not None:
        got = file_digest(part, algorithm)
        if got != checksum:
            part.unlink()
            raise DownloadError(f"{_shown(url)}: {algorithm.upper()} {got} does not match the expected {checksum}; "
                                "removed the download, run again")
    os.replace(part, dest)
    return dest


def _shown(url: str) -> str:
    """`url` without its query string, which for a signed link is a secret."""
    return url.split("?", 1)[0]


def extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive (any compression tarfile reads) into `dest`, refusing members that would land outside it."""
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            root = dest.resolve()
            for member in tar.getmembers():
                if not (root / member.name).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive}: member {member.name} would be written outside {dest}")
            tar.extractall(dest)
