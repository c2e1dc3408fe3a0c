"""A curriculum's second stage on the CPU: a cut probe-sweep cell's loop state trained on to the end of its own
schedule on another level of its probe, then saved whole for ``probe_transfer``.

    python -m tsham.experiments.probe_stage2 runs/a8easy/cells/<cell>.ckpt --level medium:distractors=7

The state's file is updated in place (every minute while it trains, as a sweep cell's; at the end with the trained
weights, its routers' calibration and the loss history), so copy it first to keep the original, and a run cut
short resumes where it stopped. What this pilots: ``train_probe_model(curriculum=...)`` switches level at a fixed
step; here the switch comes where the device call cut the cell, and the learning rate follows the cell's own
cosine schedule to its end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tsham.experiments.probe_sweep import FINAL_SUFFIX, cell_config
from tsham.experiments.probe_transfer import cell_of
from tsham.probes.resume import read_loop_state, save_loop_state
from tsham.probes.runner import train_probe_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state", type=Path, help="a cut cell's loop state (<run>/cells/<cell>.ckpt)")
    parser.add_argument("--level", required=True, help="the level to train on from the state's step to the end")
    args = parser.parse_args(argv)
    if args.state.name.endswith(FINAL_SUFFIX):
        parser.error(f"{args.state}: a finished cell's weights, without the optimizer's state: nothing to train on")
    try:
        cell = cell_of(args.state)
    except ValueError as error:
        parser.error(str(error))
    start = read_loop_state(args.state)["next_step"]
    torch.set_num_threads(1)  # as a sweep worker: two pilots share the 2 cores
    history: list = []
    model = train_probe_model(cell["probe"], args.level, cell_config(cell, args.level), cell["steps"],
                              cell["batch_size"], cell["lr"], seed=cell["seed"], history=history,
                              checkpoint=args.state)
    # the finished weights, without the optimizer (as a sweep's <cell>.final.pt): nothing resumes from them
    save_loop_state(args.state, model, None, cell["steps"], cell["steps"], history, history[-1][2] if history else 0.0)
    print(f"{args.state.name}: steps {start}-{cell['steps']} on {args.level}; last loss {history[-1][1]:.3f}")


if __name__ == "__main__":
    main()
