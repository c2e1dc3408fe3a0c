"""The data cache: look in TSHAM_DATA_DIR first, download from the canonical address when online, check md5."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from tsham.datasets.cards import CARDS, DatasetCard


def data_dir() -> Path:
    """``$TSHAM_DATA_DIR``, else ``~/.cache/tsham``."""
    return Path(os.environ.get("TSHAM_DATA_DIR") or Path.home() / ".cache" / "tsham")


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(card: DatasetCard | str, relative: str, download: bool = True, timeout: float = 30.0) -> Path:
    """Path of one file of a dataset, verified by md5; downloaded into the cache when absent and allowed.

    Raises:
        FileNotFoundError: absent and not downloadable (offline), naming the file, the directory and the URL.
        ValueError: present (or downloaded) but with another md5 (a corrupt or different file).
    """
    if isinstance(card, str) and card not in CARDS:
        raise ValueError(f"unknown dataset {card!r}; known: {', '.join(sorted(CARDS))}")
    card = CARDS[card] if isinstance(card, str) else card
    if relative not in card.files:
        raise ValueError(f"dataset {card.name!r} has no file {relative!r}; its files: {', '.join(card.files)}")
    md5, url = card.files[relative]
    path = data_dir() / relative
    if not path.is_file() and download:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".part")
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                out.write(response.read())
            if md5sum(tmp) != md5:  # checked before it enters the cache, where it would fail every later call
                got = md5sum(tmp)
                tmp.unlink()
                raise ValueError(f"{url} sent a file with md5 {got}, expected {md5}: not kept in {data_dir()}")
            tmp.replace(path)
        except OSError as err:
            raise FileNotFoundError(
                f"{relative} of dataset {card.name!r} is not in {data_dir()} and could not be downloaded from "
                f"{url} ({err}); put the file there or set TSHAM_DATA_DIR") from None
    if not path.is_file():
        raise FileNotFoundError(f"{relative} of dataset {card.name!r} is not in {data_dir()} (download disabled); "
                                f"get it from {url} or set TSHAM_DATA_DIR")
    actual = md5sum(path)
    if actual != md5:
        raise ValueError(f"{path} has md5 {actual}, expected {md5}: a corrupt or different file")
    return path
