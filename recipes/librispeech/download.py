"""Download and extract LibriSpeech (and Mini LibriSpeech) from OpenSLR.

    python recipes/librispeech/download.py dl_dir=data/librispeech/download
    python recipes/librispeech/download.py subsets=[dev-clean,test-clean] mirror=https://us.openslr.org/resources

Interrupted downloads resume where they stopped (HTTP Range requests on `<archive>.part`), a
dropped connection is retried, and every archive is checked against OpenSLR's MD5 sum before
it is extracted. A subset that is already extracted is skipped. Options: conf/download.yaml.
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

from asr.config import UsageError, load_config, run_main, split_args

CONF_DIR = Path(__file__).resolve().parent / "conf"
# subset → (OpenSLR resource number, MD5 of <subset>.tar.gz from the resource's md5sum.txt)
SUBSETS = {
    "dev-clean": ("12", "42e2234ba48799c1f50f24a7926300a1"),
    "dev-other": ("12", "c8d0bcc9cca99d4f8b62fcc847357931"),
    "test-clean": ("12", "32fa31d27d2e1cad72775fee3f4849a9"),
    "test-other": ("12", "fb5a50374b501bb3bac4815ee91d3135"),
    "train-clean-100": ("12", "2a93770f6d5c6c964bc36631d331a522"),
    "train-clean-360": ("12", "c0e676e450a7ff2f54aeade5171606fa"),
    "train-other-500": ("12", "d1a0fd59409feb2c614ce4d30c387708"),
    "dev-clean-2": ("31", "6d7ab67ac6a1d2c993d050e16d61080d"),  # Mini LibriSpeech, same layout
    "train-clean-5": ("31", "5df7d4e78065366204ca6845bb08f490"),
}
BLOCK = 1 << 20  # bytes per read
RETRY_WAIT = 2.0  # seconds before the first retry; doubles with every further one (at most 60)
EXTRACTED_MARK = ".extracted"  # written into LibriSpeech/<subset>/ once extraction finished


class DownloadError(Exception):
    """A download that failed for good (after retries) or whose checksum does not match."""


def md5sum(path: Path) -> str:
    """Hex MD5 of a file, read in blocks."""
    digest = hashlib.md5()
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


def fetch(url: str, dest: Path, md5: str, retries: int = 5, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` (resuming `dest`.part) and check its MD5; returns `dest`.

    A finished `dest` with the right checksum is kept as it is. A checksum mismatch removes the
    partial file and raises DownloadError, so the next run starts over.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if md5sum(dest) == md5:
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
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
            if attempt == retries:
                raise DownloadError(f"{url}: failed after {retries} attempts ({err}); run again to resume") from None
            have = part.stat().st_size if part.exists() else 0
            print(f"{url}: {err}; retrying ({attempt}/{retries - 1}) from byte {have}")
            time.sleep(min(RETRY_WAIT * 2 ** (attempt - 1), 60))
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise DownloadError(f"{url}: MD5 {got} does not match the expected {md5}; removed the download, run again")
    os.replace(part, dest)
    return dest


def extract(archive: Path, dest: Path) -> None:
    """Extract a .tar.gz into `dest`, refusing members that would land outside it."""
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            root = dest.resolve()
            for member in tar.getmembers():
                if not (root / member.name).resolve().is_relative_to(root):
                    raise DownloadError(f"{archive}: member {member.name} would be written outside {dest}")
            tar.extractall(dest)


def download_subset(subset: str, dl_dir: Path, mirror: str, keep_archive: bool, retries: int) -> Path:
    """Download, check and extract one subset; returns its folder `dl_dir`/LibriSpeech/`subset`."""
    resource, md5 = SUBSETS[subset]
    folder = dl_dir / "LibriSpeech" / subset
    if (folder / EXTRACTED_MARK).exists():
        print(f"{subset}: already extracted in {folder}")
        return folder
    archive = fetch(f"{mirror.rstrip('/')}/{resource}/{subset}.tar.gz", dl_dir / f"{subset}.tar.gz", md5, retries)
    print(f"{subset}: checksum ok, extracting")
    extract(archive, dl_dir)
    if not folder.is_dir():
        raise DownloadError(f"{archive}: did not contain LibriSpeech/{subset}/")
    (folder / EXTRACTED_MARK).touch()
    if not keep_archive:
        archive.unlink()
    return folder


def main(argv: list[str]) -> int:
    """Download every configured subset."""
    paths, overrides = split_args(argv)
    if paths:
        raise UsageError(f"unexpected argument(s) {paths}; use key=value overrides, e.g. subsets=[dev-clean]")
    cfg = load_config("download", overrides, config_dir=CONF_DIR)
    unknown = [s for s in cfg.subsets if s not in SUBSETS]
    if unknown:
        raise UsageError(f"unknown subset(s) {unknown}; known: {', '.join(SUBSETS)}")
    for subset in cfg.subsets:
        download_subset(subset, Path(cfg.dl_dir), cfg.mirror, cfg.keep_archives, cfg.retries)
    return 0


if __name__ == "__main__":
    run_main(main, errors=(DownloadError, tarfile.TarError))
