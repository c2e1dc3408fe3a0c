"""Checkpoints: safetensors weights + a JSON config with a format version (no pickle anywhere)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import tsham
from tsham.config import FORMAT_VERSION, TshamConfig
from tsham.model import TshamModel

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_checkpoint(model: TshamModel, path: str | Path, matrix_dtype: torch.dtype | None = None) -> Path:
    """Writes ``path/model.safetensors`` and ``path/config.json``; returns the folder.

    ``matrix_dtype`` (e.g. ``torch.float16``) stores the weight matrices (parameters of 2+ dimensions) in that
    dtype to halve the file; vectors and buffers (norms, biases, router thresholds) stay exact. Loading casts back
    to the model's dtype."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    params = {name for name, p in model.named_parameters() if p.ndim >= 2}
    state = {k: (v.to(matrix_dtype) if matrix_dtype is not None and k in params else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
    meta = {"format_version": FORMAT_VERSION, "tsham_version": tsham.__version__, "config": model.config.to_dict()}
    (path / CONFIG).write_text(json.dumps(meta, indent=1))
    return path


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; anything else (bad JSON, a list) is a ValueError naming the file."""
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object; got {type(meta).__name__}")
    return meta


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or foreign file is a ValueError naming it."""
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"{path} is truncated or not a safetensors file: {err}") from None


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over a model's state (weights and buffers such as router thresholds, in name order): what a saved
    stream records, so that it resumes only with the model that wrote it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TshamModel:
    """Reads a folder written by :func:`save_checkpoint`; every mismatch is a clear error.

    Raises:
        FileNotFoundError: the folder or one of its two files is missing.
        ValueError: another format version, an unreadable config, or weights that do not fit the config.
    """
    path = Path(path)
    for name in (CONFIG, WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint file {path / name} not found (a tsham checkpoint is a folder with "
                                    f"{CONFIG} and {WEIGHTS})")
    meta = read_json(path / CONFIG)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"checkpoint {path} has format version {version}; this tsham ({tsham.__version__}) reads "
                         f"version {FORMAT_VERSION}")
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{path / CONFIG} has no model configuration (its 'config' entry)")
    try:
        config = TshamConfig.from_dict(meta["config"])
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path / CONFIG}: the model configuration is incomplete or has a wrong type: "
                         f"{type(err).__name__}: {err}") from None
    model = TshamModel(config)
    state = read_tensors(path / WEIGHTS)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} does not match its config: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, wrong shapes {wrong[:5]}")
    model.load_state_dict(state)
    return model.to(device).eval()
