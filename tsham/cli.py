"""The ``tsham`` command line. Only subcommands that work exist."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import platform
import sys
from pathlib import Path


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except Exception as err:  # noqa: BLE001 - report any import failure as text
        return f"not importable ({type(err).__name__})"


def backends() -> list[tuple[str, str, str]]:
    """(op, backend, status) for every kernel path tsham has, as usable on this machine."""
    import torch

    cuda = torch.cuda.is_available()
    fla = _version("fla") if cuda else "needs CUDA"
    interp = "TRITON_INTERPRET=1 (CPU)" if os.environ.get("TRITON_INTERPRET") == "1" else "off"
    gpu = "usable" if cuda else "needs CUDA"
    fused = "usable" if cuda and not fla.startswith("not") else fla
    if fused == "usable":
        from tsham.ops.gated_delta.fla_path import fla_backward_blocked

        blocked = fla_backward_blocked(torch.cuda.current_device())
        fused = fused if blocked is None else "forward only; training takes the torch chunks (pip install tilelang)"
    return [
        ("gated_delta", "torch chunks (parallel in chunks)", "usable"),
        ("gated_delta", "fla-core chunk kernels + error", fused),
        ("scratchpad", "torch compact cache", "usable"),
        ("scratchpad", "Triton fwd/bwd/decode kernels", gpu if cuda or interp == "off" else "usable (interpreter)"),
        ("triton", "interpreter", interp),
    ]


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    import tsham

    print(f"tsham       {tsham.__version__}")
    print(f"python      {platform.python_version()} ({sys.executable})")
    for mod in ("torch", "triton", "gluonts", "numpy", "pandas"):
        print(f"{mod:<11} {_version(mod)}")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA device)"
    print(f"device      {device}")
    print("kernel backends:")
    for op, backend, status in backends():
        print(f"  {op:<12} {backend:<36} {status}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tsham.demo import format_table, run_demo

    reports = run_demo(batch=args.batch, length=args.length, warmup=args.warmup, seed=args.seed)
    print(format_table(reports, args.length))
    return 0


def _series_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--id-column", help="series id column (default: id; a file without one is one series)")
    p.add_argument("--timestamp-column", default="timestamp")
    p.add_argument("--target", default="target", help="value column")


def _read_long(args: argparse.Namespace):
    """The ``--input`` table in long form and its id column (``--id-column``, default ``id``; a table without the
    default one is one series, a named column that is absent is an error)."""
    from tsham.io import long_frame, read_table

    id_column = args.id_column or "id"
    table = read_table(args.input, id_column)
    if args.id_column and args.id_column not in table.columns:
        raise ValueError(f"--id-column {args.id_column!r} is not a column of {args.input} (its columns: "
                         f"{list(table.columns)}); leave it out for a table of one series")
    return long_frame(table, id_column, args.timestamp_column, args.target), id_column


def cmd_forecast(args: argparse.Namespace) -> int:
    import numpy as np

    from tsham.forecasting import TshamPipeline
    from tsham.forecasting.plot import plot_forecasts
    from tsham.io import check_outputs, long_series

    check_outputs(args.output, plot=args.plot)
    pipe = TshamPipeline.load(args.model)
    df, id_column = _read_long(args)
    out = pipe.predict_df(df, args.horizon, id_column, args.timestamp_column, args.target, freq=args.freq)
    out.to_csv(args.output, index=False)
    print(f"wrote {len(out)} rows ({out[id_column].nunique()} series x {args.horizon} steps) to {args.output}")
    if args.plot:  # the first series predict_df forecast, with the forecasts it wrote, on their own time axis
        items, times = [], []
        levels = [str(q) for q in pipe.quantiles]
        for name, g in long_series(df, id_column, args.timestamp_column, args.target)[: args.plot_series]:
            series, rows = g[args.target].to_numpy(np.float32), out[out[id_column] == name]
            items.append((name, series, rows[levels].to_numpy().T, pipe.routing_map(series, args.horizon)))
            times.append((g[args.timestamp_column].to_numpy(), rows[args.timestamp_column].to_numpy()))
        print(f"wrote {plot_forecasts(items, pipe.quantiles, args.plot, 4 * args.horizon, times)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tsham.evaluation import CONFIGS, scoreboard
    from tsham.forecasting import TshamPipeline, TshamPredictor
    from tsham.io import check_outputs

    check_outputs(args.output)
    pipe = TshamPipeline.load(args.model)
    configs = [c for c in CONFIGS if args.dataset in ("all", c[0]) and args.term in ("all", c[1])]
    if not configs:
        raise ValueError(f"no offline GIFT-Eval configuration matches dataset={args.dataset} term={args.term}; "
                         f"known: {CONFIGS}")
    table = scoreboard(lambda h: TshamPredictor(pipe, h), configs)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.output:
        table.to_csv(args.output, index=False)
    return 0


def _pool_from_args(args: argparse.Namespace):
    import numpy as np

    from tsham.datasets import synthetic_mix
    from tsham.io import future_stamps, long_series
    from tsham.training import PoolSeries

    pool = [PoolSeries.from_synthetic(s) for s in synthetic_mix(args.synthetic, args.series_length, args.seed)]
    if args.input:
        df, id_column = _read_long(args)
        groups = long_series(df, id_column, args.timestamp_column, args.target)
        for item, g in groups:  # what forecast refuses, training must not take in silently (long_series refuses inf)
            if len(g) >= 3:  # gaps would join the steps around them: missing steps must be empty rows
                future_stamps(g[args.timestamp_column], 1, args.freq, item)
        series = [g[args.target].to_numpy(np.float32) for _, g in groups]
        need = max(args.horizons or (args.horizon,)) + 1  # a training window: one context step and the horizon
        # observed values, not rows: a series of empty cells has rows but nothing to learn from
        short = [int(np.isfinite(s).sum()) < need for s in series]
        if all(short):
            raise ValueError(f"every series of {args.input} has fewer than {need} observed values (horizon + 1): "
                             "none could be trained on; lower --horizon, or check the target column")
        if any(short):
            print(f"warning: {sum(short)} of the {len(series)} series of {args.input} have fewer than {need} "
                  "observed values (horizon + 1) and are not trained on", file=sys.stderr)
        pool += [PoolSeries.from_array(s) for s, few in zip(series, short, strict=True) if not few]
    if not pool:
        raise ValueError("no training data: give --input and/or --synthetic N > 0")
    return pool


def _train_config(args: argparse.Namespace, config):
    """The :class:`~tsham.training.TrainConfig` of `tsham train` / `finetune` for a model of ``config``. Unless
    ``--[no-]align-jitter`` says otherwise, a model that cuts its patches from the context's start (the shipped
    one) trains with the alignment jittered, as it was pretrained: its forecasts open mid-patch whenever the
    context is not a whole number of patches."""
    from tsham.training import TrainConfig

    horizons = tuple(args.horizons or ())
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, horizon=max(horizons or (args.horizon,)),
                       horizons=horizons, lr=args.lr, warmup_steps=min(args.warmup, args.steps),
                       kv_warmup_steps=args.kv_warmup, seed=args.seed, max_minutes=args.max_minutes,
                       validation_steps=args.validation_steps, val_every=args.val_every, patience=args.patience,
                       val_windows=args.val_windows, val_metric=args.val_metric,
                       align_jitter=config.align == "start" if args.align_jitter is None else args.align_jitter)


# the routers whose policy, not a threshold, decides what is routed: what each keeps
FIXED_POLICIES = {"all": "every token", "none": "nothing", "recency": "a recent window"}
# what `tsham train` can build and feed (event routing needs flags in every batch, composite its children, oracle
# the probes' masks: they train through the Python API and the probe and bench commands)
TRAINABLE_ROUTERS = ("surprise", "uncertainty", "learned", "random", *FIXED_POLICIES)


def whole_number(text: str) -> int:
    """An argparse type of every command: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1; got {text}")
    return value


def _check_horizon(args: argparse.Namespace, max_horizon: int) -> None:
    """A training horizon the model cannot forecast is an error naming the flag, before any step runs."""
    longest = max(args.horizons or (args.horizon,))
    if longest > max_horizon:
        raise ValueError(f"--horizon(s) {longest} is longer than the model forecasts ({max_horizon})")


def _check_out(args: argparse.Namespace, base: str | None = None) -> None:
    """Refuses an ``--out`` whose run would be lost: one that holds a run (unless ``--resume`` or ``--overwrite``),
    or, for a fine-tune, the folder of the ``base`` model itself."""
    from pathlib import Path

    out = Path(args.out)
    if base is not None and (out / "model").resolve() == Path(base).resolve():
        raise ValueError(f"--out {out} would overwrite the model being fine-tuned ({base}); choose another --out")
    held = [p for p in (out / "model", out / "lightning" / "last.ckpt") if p.exists()]
    if held and not (getattr(args, "resume", False) or args.overwrite):
        resume = "give --resume to continue it, " if hasattr(args, "resume") else ""  # finetune has no --resume
        raise ValueError(f"--out {out} already holds a run ({', '.join(map(str, held))}): {resume}--overwrite to "
                         "replace it, or another --out")


def cmd_train(args: argparse.Namespace) -> int:
    from tsham.config import TshamConfig
    from tsham.heads import DEFAULT_LAGS, DEFAULT_MEANS, PriorConfig, parse_means
    from tsham.training import train

    _check_out(args)
    if args.router in FIXED_POLICIES:  # the policy decides what is routed: there is no fraction to aim at
        if args.kv_target is not None:
            raise ValueError(f"--kv-target: the {args.router} router takes no target fraction (it routes "
                             f"{FIXED_POLICIES[args.router]}); leave it out")
        router_kwargs = {}
    else:
        router_kwargs = {"target": 0.1 if args.kv_target is None else args.kv_target}
    config = TshamConfig.small(d_model=args.d_model, patch_length=args.patch_length, n_layers=args.layers,
                               num_heads=args.heads, head_dim=args.d_model // args.heads, router=args.router,
                               router_kwargs=router_kwargs)
    config.context_length = args.context_length
    _check_horizon(args, config.max_horizon)
    lags = DEFAULT_LAGS if args.prior_lags is None else tuple(args.prior_lags)
    if args.prior_means is not None:
        means = parse_means(args.prior_means)
        if means and not lags:
            raise ValueError("--prior-means needs a prior: give --prior-lags some lags (the flag alone turns the "
                             "prior off)")
    else:  # the shipped model's means, of the lags this run offers
        means = tuple(m for m in DEFAULT_MEANS if m[0] in lags)
    prior = PriorConfig(lags=lags, means=means, per_step=bool(lags)).within(config.context_length)
    # as the shipped model's: scores per step of a future patch, quantiles widened by the means' spread (if any)
    config.prior = dataclasses.replace(prior, spread=bool(prior.means))
    if args.resume and prior.lags:
        config.prior = _prior_as_resumed(Path(args.out) / "lightning" / "last.ckpt", config.prior)
    dropped = sorted(set(means) - set(config.prior.means))
    if dropped:
        print(f"prior: a context of {config.context_length} steps cannot score the means "
              f"{' '.join(f'{p}x{n}' for p, n in dropped)}; training without them")
    _quiet_lightning()
    train(config, _train_config(args, config), _pool_from_args(args), args.out, resume=args.resume)
    print(f"model written to {args.out}/model")
    _print_validation(args.out)
    return 0


def _quiet_lightning() -> None:
    """The CLI's training output is its progress bar and its own lines: Lightning's notes on absent accelerators,
    its advertising tip and a deprecation inside Lightning itself are left out (Python API users keep them)."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def _print_validation(out: str) -> None:
    """What validation decided, if the run validated (``model/validation.json``): whether training beat its start."""
    import json

    path = Path(out) / "model" / "validation.json"
    if path.is_file():
        v = json.loads(path.read_text())
        kept = "the starting weights" if v["best_step"] == 0 else f"step {v['best_step']}"
        print(f"validation ({v.get('metric', 'pinball')}): {v['initial_val_loss']:.4g} at the start, best "
              f"{v['best_val_loss']:.4g}; exported {kept}")


def _prior_as_resumed(ckpt: Path, prior):
    """``prior`` (a :class:`~tsham.heads.PriorConfig`) with scores per step and the spread only where the run in
    ``ckpt`` has them: `tsham train` has built both since rev e6aa527, and a run started before resumes without.
    Unchanged when the checkpoint cannot be read (resuming then names the problem)."""
    import pickle

    import torch

    try:
        keys = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"].keys()
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError):
        return prior
    return dataclasses.replace(prior, per_step=any(k.startswith("model.prior.step_score.") for k in keys),
                               spread=any(k.startswith("model.prior.spread_scale.") for k in keys))


def cmd_finetune(args: argparse.Namespace) -> int:
    from tsham.checkpoint import load_checkpoint
    from tsham.forecasting.pipeline import DEFAULT_MODEL
    from tsham.training import train

    start = args.model or DEFAULT_MODEL  # the shipped model unless another is named, as `tsham forecast` reads
    _check_out(args, start)
    base = load_checkpoint(start)
    config = base.config
    reads = config.context_length  # what the start model forecasts from
    if args.context_length is not None:
        config.context_length = args.context_length
    if args.kv_target is not None:
        config.ham.router_kwargs["target"] = args.kv_target
    _check_horizon(args, config.max_horizon)
    frozen = {"none": [], "encoder": ["encoder."], "stack": ["encoder.", "stack."]}[args.freeze]
    _quiet_lightning()
    model = train(config, _train_config(args, config), _pool_from_args(args), args.out, init_from=base,
                  frozen=tuple(frozen))
    if model.config.context_length < reads:  # shorter training windows are a training choice: the fine-tuned
        # model goes on reading as much history as the start model did (nothing in its weights depends on it)
        from tsham.checkpoint import save_checkpoint

        model.config.context_length = reads
        save_checkpoint(model, Path(args.out) / "model")
        print(f"trained on windows of {args.context_length} steps; the fine-tuned model reads up to {reads} steps of "
              "context, as the start model did")
    print(f"fine-tuned model written to {args.out}/model ({sum(p.numel() for p in model.parameters())} parameters)")
    _print_validation(args.out)
    return 0


def _training_args(p: argparse.ArgumentParser, steps: int, lr: float, synthetic: int) -> None:
    p.add_argument("--out", required=True, help="run folder: model/ (safetensors + config) and lightning/ state")
    p.add_argument("--overwrite", action="store_true", help="replace the run an --out folder already holds")
    p.add_argument("--input", help="CSV/parquet of the user's series (long format)")
    _series_args(p)
    p.add_argument("--freq", help="pandas frequency of the timestamps, where it cannot be inferred (checked, not "
                   "filled: missing steps must be rows with an empty target)")
    p.add_argument("--synthetic", type=int, default=synthetic, help="synthetic series in the training pool")
    p.add_argument("--series-length", type=int, default=2048, help="length of each synthetic series")
    p.add_argument("--steps", type=whole_number, default=steps)
    p.add_argument("--batch-size", type=whole_number, default=32)
    p.add_argument("--horizon", type=whole_number, default=64, help="forecast steps per training window")
    p.add_argument("--horizons", type=whole_number, nargs="+", help="draw each batch's horizon from these instead")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes (the schedule follows)")
    p.add_argument("--align-jitter", action=argparse.BooleanOptionalAction, default=None,
                   help="drop 0..P-1 leading steps per batch and cut patches from the start, so forecasts open "
                   "mid-patch as often as with contexts of any length or in a stream (default: on for a model that "
                   "cuts its patches from the start, as the shipped one, which was pretrained so)")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up steps")
    p.add_argument("--kv-warmup", type=int, default=0, help="steps over which the KV target anneals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation-steps", type=int, default=0,
                   help="hold out the last N steps of every series: validate there, export the best weights")
    p.add_argument("--val-every", type=int, default=100, help="optimizer steps between validations")
    p.add_argument("--val-windows", type=whole_number, default=512,
                   help="validation windows (shared out among --horizons), drawn once")
    p.add_argument("--val-metric", choices=["pinball", "mse"], default="pinball",
                   help="what validation scores: the quantile loss, or the median's squared error in the series' "
                   "units (when point-forecast MSE is what counts, as under the LTSF protocol; on series of different "
                   "scales the largest dominates it)")
    p.add_argument("--patience", type=int, default=0, help="stop after N validations without improvement (0: never)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsham", description="Time-series models on Hybrid Associative Memory.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, usable kernel backends and the device").set_defaults(func=cmd_info)
    demo = sub.add_parser("demo", help="route a synthetic stream with every router but the oracle at a 10%% KV "
                          "target")
    demo.add_argument("--batch", type=whole_number, default=8, help="streams per batch")
    demo.add_argument("--length", type=whole_number, default=256, help="tokens per stream")
    demo.add_argument("--warmup", type=int, default=40, help="controller warm-up batches")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    fc = sub.add_parser("forecast", help="forecast a CSV/parquet of series with a trained model")
    fc.add_argument("--model", help="checkpoint folder (model.safetensors + config.json); default: the shipped model")
    fc.add_argument("--input", required=True,
                    help="long table (CSV/parquet: id, timestamp, target columns) or a bundled dataset, e.g. sm_co2")
    fc.add_argument("--horizon", type=int, required=True)
    _series_args(fc)
    fc.add_argument("--freq", help="pandas frequency of the timestamps (inferred if absent)")
    fc.add_argument("--output", default="forecast.csv", help="CSV of quantiles (default: forecast.csv, replaced if "
                    "it exists)")
    fc.add_argument("--plot", help="PNG: context, forecast band and the steps the scratchpad kept")
    fc.add_argument("--plot-series", type=whole_number, default=4, help="how many series the plot shows (the "
                    "first N of the input)")
    fc.set_defaults(func=cmd_forecast)

    ev = sub.add_parser("evaluate", help="GIFT-Eval protocol (MASE, CRPS, ratios to seasonal naive) on a dataset")
    ev.add_argument("--model", help="checkpoint folder; default: the shipped model")
    ev.add_argument("--dataset", default="all", help="m4_hourly, m4_weekly, etth1, etth2 or all")
    ev.add_argument("--term", default="all", help="short, medium, long or all")
    ev.add_argument("--output", help="CSV of the table")
    ev.set_defaults(func=cmd_evaluate)
    from tsham.forecasting.stream_cli import add_stream_parser

    add_stream_parser(sub)
    from tsham.probes.command import add_probe_parser

    add_probe_parser(sub)
    from tsham.experiments.routing_policies import add_bench_parser

    add_bench_parser(sub)

    tr = sub.add_parser("train", help="train a model on synthetic data and/or your series")
    _training_args(tr, steps=1000, lr=1e-3, synthetic=500)
    tr.add_argument("--context-length", type=int, default=512)
    tr.add_argument("--patch-length", type=int, default=16)
    tr.add_argument("--d-model", type=int, default=64)
    tr.add_argument("--layers", type=int, default=2)
    tr.add_argument("--heads", type=int, default=4)
    tr.add_argument("--router", default="surprise", choices=TRAINABLE_ROUTERS,
                    help="routing policy (event, composite and oracle train through the Python API)")
    tr.add_argument("--kv-target", type=float, help="target KV fraction of a scoring router (default 0.1)")
    tr.add_argument("--prior-lags", type=int, nargs="*", metavar="LAG",
                    help="candidate seasons of the seasonal prior, in steps (default: the shipped model's, "
                         "tsham.heads.DEFAULT_LAGS; the flag alone: no prior). As in the shipped model, the prior "
                         "scores each step of a future patch and widens the quantiles by the means' seasonal spread")
    tr.add_argument("--prior-means", nargs="*", metavar="LAGxSEASONS",
                    help="averaged candidates of the prior, e.g. 24x7 = the mean of the last 7 days at an hourly rate "
                         "(default: those of the shipped model's, tsham.heads.DEFAULT_MEANS, whose lag is offered and "
                         "that the context length can score; the flag alone: none)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.set_defaults(func=cmd_train)

    ft = sub.add_parser("finetune", help="adapt a checkpoint to your series")
    ft.add_argument("--model", help="checkpoint folder to start from; default: the shipped model")
    _training_args(ft, steps=200, lr=1e-4, synthetic=0)
    ft.add_argument("--freeze", choices=["none", "encoder", "stack"], default="none",
                    help="keep the patch encoder's (and the HAM stack's) weights fixed; the routers' thresholds, "
                         "buffers, still follow their target fraction")
    ft.add_argument("--kv-target", type=float, default=None, help="new target KV fraction")
    ft.add_argument("--context-length", type=int, help="steps of context per training window (default: the "
                    "model's); the fine-tuned model reads the longer of this and the start model's context")
    ft.set_defaults(func=cmd_finetune)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tsham`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # bad input: one clear line, no stack trace
        print(f"tsham {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
