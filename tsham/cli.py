"""The ``tsham`` command line. Only subcommands that work exist."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys


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
    return [
        ("gated_delta", "torch chunks (parallel in chunks)", "usable"),
        ("gated_delta", "fla-core chunk kernels + error", "usable" if cuda and not fla.startswith("not") else fla),
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsham", description="Time-series models on Hybrid Associative Memory.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, usable kernel backends and the device").set_defaults(func=cmd_info)
    demo = sub.add_parser("demo", help="route a synthetic stream with every router at a 10%% KV target")
    demo.add_argument("--batch", type=int, default=8, help="streams per batch")
    demo.add_argument("--length", type=int, default=256, help="tokens per stream")
    demo.add_argument("--warmup", type=int, default=40, help="controller warm-up batches")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tsham`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
