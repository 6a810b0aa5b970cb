"""Resumable, checksummed downloads and safe extraction (asr.download), against a local HTTP server with Range."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from asr import download

PAYLOAD = bytes(range(256)) * 3000  # 768 kB
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_fetch_downloads_and_checks_md5(server, tmp_path):
    server.files["/a.tar.gz"] = PAYLOAD
    dest = download.fetch(server.url("/a.tar.gz"), tmp_path / "a.tar.gz", PAYLOAD_MD5)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "a.tar.gz.part").exists()
    download.fetch(server.url("/a.tar.gz"), dest, PAYLOAD_MD5)  # already there with the right sum: no request
    assert len(server.requests) == 1


def test_fetch_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    server.files["/a.tar.gz"] = PAYLOAD
    (tmp_path / "a.tar.gz.part").write_bytes(PAYLOAD[:100_000])
    dest = download.fetch(server.url("/a.tar.gz"), tmp_path / "a.tar.gz", PAYLOAD_MD5)
    assert server.requests == [("/a.tar.gz", "bytes=100000-")] and dest.read_bytes() == PAYLOAD


def test_fetch_retries_a_cut_transfer_from_where_it_stopped(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    server.files["/a.tar.gz"], server.cut_after = PAYLOAD, 300_000
    dest = download.fetch(server.url("/a.tar.gz"), tmp_path / "a.tar.gz", PAYLOAD_MD5, retries=3)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/a.tar.gz", None), ("/a.tar.gz", "bytes=300000-")]


def test_fetch_restarts_when_the_server_ignores_range(server, tmp_path):
    server.files["/a.tar.gz"], server.honor_range = PAYLOAD, False
    (tmp_path / "a.tar.gz.part").write_bytes(b"x" * 5000)
    assert download.fetch(server.url("/a.tar.gz"), tmp_path / "a.tar.gz", PAYLOAD_MD5).read_bytes() == PAYLOAD


def test_fetch_rejects_a_bad_checksum_and_a_missing_file(server, tmp_path):
    server.files["/a.tar.gz"] = PAYLOAD
    (tmp_path / "a.tar.gz.part").write_bytes(b"corrupt" * 1000)  # a wrong prefix: the resumed file cannot match
    with pytest.raises(download.DownloadError, match="does not match"):
        download.fetch(server.url("/a.tar.gz"), tmp_path / "a.tar.gz", PAYLOAD_MD5)
    assert not (tmp_path / "a.tar.gz.part").exists() and not (tmp_path / "a.tar.gz").exists()
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.fetch(server.url("/missing.tar.gz"), tmp_path / "m.tar.gz", PAYLOAD_MD5)


def test_fetch_checks_sha256_and_keeps_a_partial_file_across_urls(server, tmp_path):
    """Signed links expire: a new URL for the same archive resumes the bytes already there; the query (the
    signature) never appears in a message."""
    server.files["/old"], server.files["/new"] = PAYLOAD, PAYLOAD
    server.cut_after = 200_000
    with pytest.raises(download.DownloadError, match="failed after 1 attempts") as err:
        download.fetch(server.url("/old?X-Signature=secret"), tmp_path / "a.tar", None, retries=1)
    assert "secret" not in str(err.value)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    dest = download.fetch(server.url("/new?X-Signature=other"), tmp_path / "a.tar", sha, algorithm="sha256")
    assert dest.read_bytes() == PAYLOAD and server.requests[-1] == ("/new?X-Signature=other", "bytes=200000-")
    with pytest.raises(download.DownloadError, match="SHA256 .* does not match") as err:
        download.fetch(server.url("/new?X-Signature=other"), tmp_path / "b.tar", "0" * 64, algorithm="sha256")
    assert "other" not in str(err.value)


def test_extract_refuses_members_outside_the_folder(tmp_path):
    for name, ok in (("corpus/en/train.tsv", True), ("../escape.txt", False)):
        archive = tmp_path / "a.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        if ok:
            download.extract(archive, tmp_path / "out")
            assert (tmp_path / "out" / name).read_bytes() == b"hi"
        else:
            with pytest.raises((download.DownloadError, tarfile.TarError)):
                download.extract(archive, tmp_path / "out")
            assert not (tmp_path / "escape.txt").exists()
