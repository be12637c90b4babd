"""Download the official dataset files, resumably and checksum-verified.

``fetch(name)`` puts the files where :func:`agad.data.load_dataset` looks for
them (``$AGAD_DATA_DIR/<name>`` or ``~/.cache/agad/<name>``). Each file is
written to ``<file>.part``; an interrupted download resumes with an HTTP
Range request; the file gets its final name (atomic ``os.replace``) only after
its size and SHA-256 match the table below, so a final name always means a
verified file.

Checksums: SHA-256 of the files as published by their hosts, cross-checked in
public code (pytorch/vision ``torchvision/prototype/datasets/_builtin/mnist.py``
and ``cifar.py``; keras-team/keras ``keras/datasets/cifar10.py`` and
``cifar100.py``, which pin the same archives by SHA-256). Sizes from the
dataset pages (MNIST, Fashion-MNIST READMEs, CIFAR page/Keras logs).

Note: Debian's ``dataset-fashion-mnist`` package recompresses the gz files,
so its files have other digests; :func:`load_dataset` reads them without a
checksum check (the IDX reader validates structure and sizes).

Example:
    >>> fetch("fashion-mnist")  # doctest: +SKIP
    PosixPath('/home/me/.cache/agad/fashion-mnist')
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from agad.data.datasets import data_home
from agad.errors import AgadError, DataError

__all__ = ["Remote", "SOURCES", "FETCHABLE", "fetch", "sha256_file"]


@dataclass(frozen=True)
class Remote:
    """One file to download: its name, its size in bytes and its SHA-256 (None = size only)."""

    filename: str
    size: int | None
    sha256: str | None


# name -> (base URL, files). Tests monkeypatch entries of this table.
SOURCES: dict[str, tuple[str, tuple[Remote, ...]]] = {
    "mnist": (
        # The original yann.lecun.com host now refuses downloads; PyTorch's
        # S3 mirror serves the identical files.
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        (
            Remote("train-images-idx3-ubyte.gz", 9912422,
                   "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            Remote("train-labels-idx1-ubyte.gz", 28881,
                   "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            Remote("t10k-images-idx3-ubyte.gz", 1648877,
                   "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            Remote("t10k-labels-idx1-ubyte.gz", 4542,
                   "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ),
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (
            Remote("train-images-idx3-ubyte.gz", 26421880,
                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            Remote("train-labels-idx1-ubyte.gz", 29515,
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            Remote("t10k-images-idx3-ubyte.gz", 4422102,
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            Remote("t10k-labels-idx1-ubyte.gz", 5148,
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ),
    ),
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/",
        (
            Remote("cifar-10-python.tar.gz", 170498071,
                   "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
        ),
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/",
        (
            Remote("cifar-100-python.tar.gz", 169001437,
                   "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
        ),
    ),
}

FETCHABLE = tuple(SOURCES)

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, remote: Remote) -> str | None:
    """None if ``path`` matches ``remote``, else what differs."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.sha256 is not None:
        digest = sha256_file(path)
        if digest != remote.sha256.lower():
            return f"SHA-256 {digest}, expected {remote.sha256}"
    return None


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        disable=not (enabled and sys.stderr.isatty()), leave=False,
    )


def _download(url: str, part: Path, remote: Remote, progress: bool) -> None:
    """Fill ``part`` with the bytes at ``url``, resuming what is already there."""
    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
        have = 0
    if remote.size is not None and have == remote.size:
        return  # complete but not yet verified (e.g. interrupted before rename)
    headers = {"User-Agent": "agad-data-fetch"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        request = urllib.request.Request(url, headers=headers)
    except ValueError as exc:  # not a URL urllib can fetch
        raise DataError(f"cannot download {url}: {exc}; check --base-url") from None
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Range not satisfiable: our .part is not a prefix of the file
            # (or already whole; the checksum decides). Start over once.
            exc.close()
            part.unlink()
            return _download(url, part, remote, progress)
        raise DataError(
            f"download of {url} failed (HTTP {exc.code} {exc.reason}); retry later or "
            f"download it by hand into {part.parent}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot reach {url} ({reason}); check the network or download the file by hand into {part.parent}"
        ) from None
    with response:
        status = response.status
        if have and status == 206:
            # Make sure the server resumed where we asked, not somewhere else.
            m = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise DataError(
                    f"{url} answered a resume request with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; delete {part} and retry"
                )
            mode = "ab"
        else:
            # 200 to a Range request means the server ignores ranges: the body
            # is the whole file, so restart from byte 0.
            mode, have = "wb", 0
        total = remote.size
        if total is None:
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
        with open(part, mode) as f, _progress_bar(total, have, remote.filename, progress) as bar:
            try:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:
                # Keep the .part: the next call resumes from here.
                raise DataError(
                    f"download of {url} was interrupted ({exc}); run the same command again to resume"
                ) from None


def fetch(
    name: str,
    dest_dir: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    progress: bool = True,
) -> Path:
    """Download dataset ``name`` ("mnist", "fashion-mnist", "cifar10", "cifar100").

    Args:
        name: the dataset.
        dest_dir: target folder; default ``$AGAD_DATA_DIR/<name>`` or
            ``~/.cache/agad/<name>``, where :func:`load_dataset` looks.
        base_url: replaces the host and folder of the official URLs
            (a mirror, or a local server in tests).
        progress: show a tqdm bar (only on a terminal).

    Returns:
        The folder holding the verified files. Files already there and
        verified are not downloaded again.

    Raises:
        AgadError: unknown name. DataError: network failure, checksum
            mismatch (the partial file is deleted) or a conflicting file.

    Example:
        >>> from agad.data import load_dataset
        >>> load_dataset("mnist", root=fetch("mnist"))  # doctest: +SKIP
    """
    if name not in SOURCES:
        raise AgadError(f"cannot fetch {name!r}; fetchable datasets are {', '.join(SOURCES)}")
    default_base, remotes = SOURCES[name]
    base = (base_url or default_base).rstrip("/") + "/"
    scheme = urllib.parse.urlsplit(base).scheme
    if scheme not in ("http", "https", "file"):
        raise AgadError(f"--base-url {base_url!r} is not an http(s) or file URL; give e.g. https://host/path/")
    dest = Path(dest_dir).expanduser() if dest_dir is not None else data_home() / name
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {dest} ({exc.strerror or exc}); pass a writable folder") from None
    try:
        _fetch_all(name, base, remotes, dest, progress)
    except BaseException:
        if created and dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()  # nothing was downloaded: leave no empty folder behind
        raise
    return dest


def _fetch_all(name: str, base: str, remotes, dest: Path, progress: bool) -> None:
    for remote in remotes:
        final = dest / remote.filename
        if final.exists():
            problem = _verify(final, remote)
            if problem is None:
                continue
            raise DataError(
                f"{final} exists but has {problem}; delete it and run `agad data fetch {name}` again"
            )
        part = final.with_name(final.name + ".part")
        _download(base + remote.filename, part, remote, progress)
        problem = _verify(part, remote)
        if problem is not None:
            part.unlink(missing_ok=True)
            raise DataError(
                f"{name}: downloaded {remote.filename} has {problem}; the partial file was deleted, "
                f"run `agad data fetch {name}` again (or use another mirror)"
            )
        os.replace(part, final)
