"""How fast probe cells train when many share one device: training steps per second of the probe sweep's model.

    python -m tsham.experiments.bench_probe_step --device cuda --processes 1 14 --name bench_probe_step_h200
    python -m tsham.experiments.bench_probe_step --device cuda --processes 1 28 --graph off on   # side by side

Each process trains one probe cell (:func:`tsham.probes.runner.train_probe_model`, the sweep's recipe) for
``--steps`` steps; the rate is read from its loss history after the first 50 steps (warm-up, compilation). For
each process count the processes run side by side, as the sweep's pool runs them, and the table gives one
process's rate and the aggregate: what decides how many cells a device call finishes. ``TSHAM_BACKEND`` (torch
or the fused kernels) and an MPS daemon, if one runs, are whatever the caller set; the table records both.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics

from tsham.experiments.common import header, write_results


def steps_per_second(probe: str, level: str, patch_length: int, policy: str, budget: float, steps: int,
                     device: str, cuda_graph: bool, queue) -> None:
    """Trains one cell for ``steps`` steps (in a worker process); puts its steps/s after step 50 on ``queue``."""
    import torch
    from tsham.probes.runner import probe_config, probe_context_length, train_probe_model

    torch.set_num_threads(1)
    config = probe_config(policy, budget, patch_length=patch_length, d_model=64, n_layers=2,
                          context_length=probe_context_length(probe, level), bind_channels=True)
    history: list = []
    train_probe_model(probe, level, config, steps, 64, 3e-3, device=device, history=history, cuda_graph=cuda_graph)
    (s0, _, t0), (s1, _, t1) = history[1], history[-1]  # history[1] is step 50
    queue.put((s1 - s0) / (t1 - t0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", default="delayed_action")
    parser.add_argument("--level", default="hard")
    parser.add_argument("--patch-length", type=int, default=8)
    parser.add_argument("--policy", default="surprise")
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--graph", choices=("off", "on"), nargs="+", default=["off"],
                        help="train eagerly, with the step replayed as a CUDA graph, or both (side by side)")
    parser.add_argument("--name", default=None, help="write experiments/results/<name>.md and .json")
    args = parser.parse_args()
    if args.steps <= 100:
        raise SystemExit(f"--steps must exceed 100 (the first 50 are warm-up); got {args.steps}")
    context = mp.get_context("spawn")
    mps = "on" if os.path.exists(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps") + "/control") else "off"
    backend = os.environ.get("TSHAM_BACKEND", "auto")
    rows = []
    for graph, n in ((g, n) for g in args.graph for n in args.processes):
        queue = context.Queue()
        procs = [context.Process(target=steps_per_second, args=(args.probe, args.level, args.patch_length,
                                                                 args.policy, args.budget, args.steps,
                                                                 args.device, graph == "on", queue))
                 for _ in range(n)]
        for p in procs:
            p.start()
        rates = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        rows.append({"processes": n, "backend": backend, "mps": mps, "cuda_graph": graph,
                     "per_process": statistics.mean(rates), "aggregate": sum(rates)})
        print(f"graph {graph}, {n:3d} processes: {rows[-1]['per_process']:.1f} steps/s each, "
              f"{rows[-1]['aggregate']:.1f} in all", flush=True)
    eager = {r["processes"]: r["aggregate"] for r in rows if r["cuda_graph"] == "off"}

    def vs_eager(row: dict) -> str:  # blank where no eager run of the same size ran beside it
        return f"{row['aggregate'] / eager[row['processes']]:.2f}x" if row["processes"] in eager else ""

    table = ("| processes | backend | MPS | CUDA graph | steps/s per process | steps/s in all | vs eager |\n"
             "|---|---|---|---|---|---|---|\n") + "\n".join(
        f"| {r['processes']} | {r['backend']} | {r['mps']} | {r['cuda_graph']} | {r['per_process']:.1f} | "
        f"{r['aggregate']:.1f} | {vs_eager(r)} |" for r in rows)
    print(table)
    if args.name:
        meta = {**header(), "cell": f"{args.probe} {args.level} p{args.patch_length} {args.policy} {args.budget:g}, "
                                    "d_model 64, 2 layers, batch 64"}
        write_results(args.name, meta, rows, table)


if __name__ == "__main__":
    main()
