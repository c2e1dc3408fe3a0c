"""The data cache: look in TSHAM_DATA_DIR first, download from the canonical address when online, check md5."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
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
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a temporary file of its own: two processes fetching the same file never write into one
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".part",
                                             delete=False) as out:
                tmp = Path(out.name)
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out)
            if (got := md5sum(tmp)) != md5:  # checked before it enters the cache, where it would fail every call
                raise ValueError(f"{url} sent a file with md5 {got}, expected {md5}: not kept in {data_dir()}")
            tmp.replace(path)
        except (OSError, http.client.HTTPException) as err:  # a cut transfer raises IncompleteRead, not OSError
            raise FileNotFoundError(
                f"{relative} of dataset {card.name!r} is not in {data_dir()} and could not be downloaded from "
                f"{url} ({type(err).__name__}: {err}); put the file there or set TSHAM_DATA_DIR") from None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)  # gone after the replace; else a partial or rejected download
    if not path.is_file():
        raise FileNotFoundError(f"{relative} of dataset {card.name!r} is not in {data_dir()} (download disabled); "
                                f"get it from {url} or set TSHAM_DATA_DIR")
    actual = md5sum(path)
    if actual != md5:
        raise ValueError(f"{path} has md5 {actual}, expected {md5}: a corrupt or different file")
    return path
