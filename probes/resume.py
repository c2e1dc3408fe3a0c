"""Resumable training for :func:`tsham.probes.runner.train_loop`: a cell longer than one 10-minute device call
saves its loop state now and then, and the next call continues from it.

The state holds the weights, the optimizer's moments, which routers have calibrated their threshold (the first
training forward sets it outright, later ones move it), the next step, the loss history and the seconds trained so
far. Nothing else is needed for a resumed loop to run exactly the steps the uncut one would have run: its batches
come from ``draw(step)``, a function of the step alone, and training draws no random numbers (random routing hashes
stream, position and seed).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = 1  # bump when the saved keys change: an older file is then refused, not misread


def save_loop_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    next_step: int, steps: int, history: list, seconds: float) -> None:
    """Writes the loop state atomically (a cut mid-write leaves the previous file whole).

    ``next_step``: the first step a resumed loop runs; ``steps``: the run's total (a resume with another total is
    refused); ``history``: ``(step, loss, seconds)`` tuples so far; ``seconds``: training time so far.
    ``optimizer`` None keeps a finished run's weights for scoring later (a third of the file without the moments);
    :func:`load_loop_state` refuses to resume from it."""
    path = Path(path)
    state = {"format": FORMAT, "next_step": next_step, "steps": steps, "history": [list(h) for h in history],
             "seconds": seconds, "model": model.state_dict(),
             "optimizer": None if optimizer is None else optimizer.state_dict(),
             "calibrated": [name for name, m in model.named_modules() if getattr(m, "calibrated", False)]}
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()  # a replayed graph may still be writing the weights
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_loop_state(path: str | Path) -> dict:
    """A :func:`save_loop_state` file as a dict (on the CPU): ``next_step``, ``steps``, ``history``, ``seconds``,
    ``model``, ``optimizer``, ``calibrated``. Raises ``ValueError`` naming the file when it is truncated or not a
    loop state."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or not a torch file: torch raises several kinds
        raise ValueError(f"cannot resume from {path}: not a readable loop state ({type(error).__name__}: {error}); "
                         "delete it to train from the start") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"cannot resume from {path}: not a loop state of format {FORMAT}; delete it to train from "
                         "the start")
    return state


def load_loop_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    steps: int) -> tuple[int, list, float]:
    """Restores a :func:`save_loop_state` file into ``model`` and ``optimizer``;
    returns ``(next_step, history, seconds)``. Raises ``ValueError`` naming the file when it is not a loop state,
    was written by a run of another length or by another model."""
    state = read_loop_state(path)
    if state["optimizer"] is None:
        raise ValueError(f"cannot resume from {path}: it keeps a finished run's weights without the optimizer's state")
    if state["steps"] != steps:
        raise ValueError(f"cannot resume from {path}: it was written by a run of {state['steps']} steps, this one "
                         f"has {steps}")
    load_weights(path, model, state, doing="resume from")
    # this run's settings (learning rate, capturable for CUDA graphs or not); the file gives moments and steps
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    saved = state["optimizer"]
    for saved_group, own in zip(saved["param_groups"], settings, strict=False):
        saved_group.update(own)  # before loading: it places the step counts by `capturable`
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"cannot resume from {path}: its optimizer state does not fit this run's ({error})") from error
    for group, own in zip(optimizer.param_groups, settings, strict=True):
        group.update(own)  # after: loading copied them, and a captured step reads the very learning-rate tensor
    return state["next_step"], [tuple(h) for h in state["history"]], state["seconds"]


def load_weights(path: str | Path, model: torch.nn.Module, state: dict | None = None,
                 doing: str = "load the weights of", fresh_routers: bool = False) -> dict:
    """Loads the weights of the loop state ``path`` (a cut run's or a finished one's; ``state``: the file already
    read by :func:`read_loop_state`) into ``model``, and marks the routers it had calibrated (a calibrated router
    moves its threshold, a fresh one sets it outright from its first training batch); returns the state. Raises
    ``ValueError`` naming the file when it is not a loop state or was written by another model (``doing`` names
    what the caller was doing, for the message).

    ``fresh_routers``: the state may come from the same model with another routing policy (full attention's weights
    for a router to learn on): the routers' own parameters it lacks keep their initialisation; every other weight
    must match, and the state may hold no router parameters the model lacks."""
    state = read_loop_state(path) if state is None else state
    try:
        missing, unexpected = model.load_state_dict(state["model"], strict=not fresh_routers)
    except RuntimeError as error:
        raise ValueError(f"cannot {doing} {path}: it was written by another model ({error})") from error
    stray = [k for k in missing if ".router." not in k] + list(unexpected)
    if stray:
        raise ValueError(f"cannot {doing} {path}: it was written by another model (missing or unexpected weights "
                         f"beyond the routers': {stray[:5]})")
    for name, module in model.named_modules():
        if name in state["calibrated"]:
            module.calibrated = True
    return state
