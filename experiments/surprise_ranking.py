"""Where a probe's needle ranks among the context's tokens by the surprise router's score, layer by layer.

    python -m tsham.experiments.surprise_ranking mqar easy --steps 1500 --name surprise_ranking_mqar_easy_cpu

Trains one surprise-routed probe model (the #6 recipe: :func:`probe_config`, :func:`train_probe_model`), then,
on test sequences, ranks every context token by each score variant (the router's relative error
``||e||^2 / ||v||^2`` or the absolute ``||e||^2``, aggregated over heads by min, mean or max) and prints how often the
needle is among the ``slots`` highest (the slots a budget affords), its median rank, and how many of those slots go
to the needle, to its echo (the token right after it: the causal convolution carries the needle into it) and, on
MQAR, to any key-value pair and any pair's echo. ``--name`` writes the table under ``experiments/results/``.
It tells a routing failure (the needle does not stand out) from a readout one.
"""

from __future__ import annotations

import argparse

import torch


def rank_table(model, batch, slots: int) -> list[dict]:
    """One row per (layer, score variant): ``needle_in_top`` (fraction of sequences), ``median_rank``, and the
    mean number of the top ``slots`` held by the needle, its echo and (MQAR) any pair and any pair's echo;
    ``batch`` is a :class:`ProbeBatch`."""
    from tsham.probes.diagnostics import needle_tokens
    from tsham.probes.runner import probe_forward

    from tsham.ham.routers.surprise import surprise_ratio

    inputs = {}
    hooks = [block.mixer.router.register_forward_hook(lambda mod, args, out, i=i: inputs.__setitem__(i, args[0]))
             for i, block in enumerate(model.stack.blocks)]
    try:
        with torch.no_grad():
            out = probe_forward(model, batch, "cpu")
    finally:
        for hook in hooks:
            hook.remove()
    n_ctx, patch = out.num_context_patches, model.config.patch.patch_length
    needle = torch.as_tensor(needle_tokens(batch.needles, patch, n_ctx, model.config.align))
    marked = {"needle": needle, "echo": echo_of(needle)}
    if batch.candidates is not None and patch == 1:  # MQAR: its kv-marker channel marks every pair's step
        pairs = torch.as_tensor(batch.context[:, -n_ctx:, batch.context.shape[2] - 2] > 0.5)
        marked |= {"pair": pairs, "pair_echo": echo_of(pairs)}
    rows = []
    for layer, inp in sorted(inputs.items()):
        error, value = inp.error[:, :n_ctx].float(), inp.value[:, :n_ctx].float()
        variants = {"ratio": surprise_ratio(error, value), "absolute": error.pow(2).sum(-1)}
        for name, per_head in variants.items():
            for aggregate in ("amin", "mean", "amax"):
                score = getattr(per_head, aggregate)(-1)  # (N, n_ctx)
                needle_score = score.masked_fill(~needle, -torch.inf).amax(1, keepdim=True)
                rank = (score > needle_score).sum(1)
                top = torch.zeros_like(needle).scatter(1, score.topk(min(slots, n_ctx), dim=1).indices, True)
                rows.append({"layer": layer, "score": name, "heads": aggregate.removeprefix("a"),
                             "needle_in_top": float((rank < slots).float().mean()),
                             "median_rank": float(rank.median()),
                             **{f"{k}_slots": float((top & m).sum(1).float().mean()) for k, m in marked.items()}})
    return rows


def echo_of(marked: torch.Tensor) -> torch.Tensor:
    """The tokens right after a marked one that are not marked themselves ``[N, T]`` bool -> ``[N, T]`` bool."""
    echo = torch.zeros_like(marked)
    echo[:, 1:] = marked[:, :-1] & ~marked[:, 1:]
    return echo


def main(argv=None) -> None:
    import pandas as pd
    from tsham.probes.generators import PROBES
    from tsham.probes.runner import TEST_SEED_OFFSET, probe_config, probe_context_length, train_probe_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("level", choices=("easy", "medium", "hard"))
    parser.add_argument("--patch-length", type=int, default=None, help="default: the #6 sweep's for the probe")
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-test", type=int, default=256)
    parser.add_argument("--name", help="also write experiments/results/<name>.md and .json")
    args = parser.parse_args(argv)
    from tsham.experiments.probe_sweep import PROBE_SETTINGS

    setting = PROBE_SETTINGS.get(args.probe, {})
    patch = args.patch_length or setting.get("patch_length", 8)
    config = probe_config("surprise", args.budget, patch_length=patch, d_model=64, n_layers=2,
                          context_length=probe_context_length(args.probe, args.level),
                          kv_rope_base=setting.get("kv_rope_base", 0.0))
    model = train_probe_model(args.probe, args.level, config, args.steps, args.batch_size, args.lr, seed=args.seed)
    batch = PROBES[args.probe](args.n_test, args.level, seed=TEST_SEED_OFFSET + args.seed)
    n_ctx = -(-batch.context.shape[1] // patch)
    slots = max(1, round(args.budget * n_ctx))
    what = (f"{args.probe} {args.level}, surprise at {args.budget:g} ({slots} of {n_ctx} context tokens), "
            f"{args.steps} steps of {args.batch_size}, seed {args.seed}, {args.n_test} test sequences")
    rows = rank_table(model, batch, slots)
    frame = pd.DataFrame(rows)
    table = "\n".join(["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.shape[1],
                       *("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |"
                         for r in frame.itertuples(index=False))])
    print(what, table, sep="\n")
    if args.name:
        from tsham.experiments.common import header, write_results

        print(write_results(args.name, {**header(), "run": what}, rows, table))


if __name__ == "__main__":
    main()
