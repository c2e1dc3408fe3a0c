"""The probe sweep of #6: every (probe, policy, budget, seed) cell trained and scored, many cells at once.

    python -m tsham.experiments.probe_sweep run --preset full --workers 28 --device cuda --out runs/probes
    python -m tsham.experiments.probe_sweep slim runs/probes runs/slim       # what a device call carries
    python -m tsham.experiments.probe_sweep merge back/runs/slim runs/probes  # what it finished, into the run
    python -m tsham.experiments.probe_sweep collect runs/probes --output runs/probes/rows.csv.gz
    python -m tsham.experiments.probe_sweep report runs/probes/rows.csv.gz --name probes_gpu

A preset (below, Zoology-style: the whole experiment is this dict) names the probes with their level and patch
length, the policies, the nominal KV budgets, the seeds, the training recipe and the test sequences per cell.
Every cell of a probe and seed trains on the same batches (the probe's training seeds), so policies differ
only in their routing.
``run`` trains one small forecaster per cell in a pool of worker processes (on one GPU the cells are
launch-bound, so several processes share it well), writes ``cells/<cell>.csv`` (one row per test sequence,
:func:`tsham.probes.runner.evaluate_probe`), ``cells/<cell>.json`` (loss curve, seconds) and
``cells/<cell>.final.pt`` (the trained weights, ~0.7 MB at d64x2, for ``experiments/probe_transfer.py`` to score
again at other levels or at a calibrated budget), and skips cells already written, so a stopped sweep resumes.
``report`` writes ``results/<name>.md`` (grouped tables and the targets of #6) and one frontier PNG per probe.
A preset's ``init_from`` names another preset whose finished cells (same probe, policy, budget and seed; their
``.final.pt`` in the same run folder) its cells start from: a further stage on another level (cell suffix
``-after-<preset>``; ``slim`` carries weights whose rows are not in the run); with ``init_policy`` they start from
that policy's cell instead (full attention's weights, for a router that learns what its attention reads; suffix
``-after-<preset>-<policy>``); with ``routers_only`` only the routers train (suffix ``-routersonly``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

PROBE_SETTINGS = {  # the level and patch length of each probe in the reported sweep
    "rare_motif": {"level": "medium", "patch_length": 16},
    "compressible_regime": {"level": "medium", "patch_length": 16},
    "delayed_action": {"level": "hard", "patch_length": 8},
    "action_window": {"level": "hard", "patch_length": 8},
    # B's ordering variant: alike actions around the queried one, contexts of varied length, so only the distance
    # from the query tells it (rotary positions on the scratchpad, as D; trains eagerly: its shapes change).
    # H200, 3 seeds: full attention 0.557, event routing 0.517 (93%), pure GDN 0.240 (43%; 63-66% where it learned)
    "action_sequence": {"level": "hard", "patch_length": 8, "kv_rope_base": 10000.0},
    "cross_channel_binding": {"level": "medium", "patch_length": 4},
    # rotary positions on the scratchpad: "the k-th most recent snapshot" needs recency, which attention without
    # positions cannot tell (H200 grid, 3 seeds: full attention RS 0.404 with them, 0.053 without; event routing
    # 0.748 against 0.641; pure GDN 0.031 either way)
    "scheduled_event": {"level": "medium", "patch_length": 8, "kv_rope_base": 10000.0},
    # easy: the level at which full attention learns the recall and pure GDN stays far below it (CPU,
    # bind_channels: RS 0.50 against 0.15); at medium neither learned it in 1500 steps. 4000 steps: at 1500 full
    # attention learned it in 3 of 3 seeds without the kv-marker flag and in 1 of 3 with it (H200, 2026-12-01)
    "mqar": {"level": "easy", "patch_length": 1, "steps": 4000},
}

RECIPE = {"steps": 1500, "batch_size": 64, "lr": 3e-3, "d_model": 64, "n_layers": 2, "n_test": 1000,
          "bind_channels": True, "kv_rope_base": 0.0, "kv_own_qk": False,
          "curriculum": None, "curriculum_steps": None, "curriculum_budget": None,
          "curriculum_guide": False, "init_from": None, "init_policy": None,
          "routers_only": False, "router_hidden": None}  # a probe's setting may override
PRESETS = {
    "full": {"probes": PROBE_SETTINGS, "policies": ("surprise", "random", "oracle", "event"),
             "budgets": (0.02, 0.05, 0.1, 0.25), "seeds": (0, 1, 2), **RECIPE},
    # the neighbouring levels of three probes, controls only: where pure GDN and full attention separate
    "levels": {"probes": {"delayed_action@medium": {"probe": "delayed_action", "level": "medium", "patch_length": 8},
                          "cross_channel_binding@easy": {"probe": "cross_channel_binding", "level": "easy",
                                                         "patch_length": 8},
                          "mqar@medium": {"probe": "mqar", "level": "medium", "patch_length": 1}},
               "policies": ("oracle",), "budgets": (), "seeds": (0,), **RECIPE},
    # the neighbouring levels of the probes that did not separate yet (A, the action window, C with decoys and the
    # binding encoder), controls only: which level the full grid should use
    "design": {"probes": {"rare_motif@easy": {"probe": "rare_motif", "level": "easy", "patch_length": 16},
                          "action_window@medium": {"probe": "action_window", "level": "medium", "patch_length": 8},
                          "cross_channel_binding@easy": {"probe": "cross_channel_binding", "level": "easy",
                                                         "patch_length": 8}},
               "policies": ("oracle",), "budgets": (), "seeds": (0,), **RECIPE},
    # long training at the easy levels, controls only: do full attention and pure GDN learn the recall at all?
    "learnability": {"probes": {"rare_motif": {"level": "easy", "patch_length": 16},
                                "cross_channel_binding": {"level": "easy", "patch_length": 8},
                                "scheduled_event": {"level": "easy", "patch_length": 8},
                                "mqar": {"level": "easy", "patch_length": 1}},
                     "policies": ("oracle", "event"), "budgets": (), "seeds": (0,),
                     **{**RECIPE, "steps": 4000, "n_test": 512}},
    # a larger learning rate for full attention where 4000 steps at 3e-3 only began to learn
    "fast_lr": {"probes": {"cross_channel_binding": {"level": "easy", "patch_length": 8},
                           "mqar": {"level": "easy", "patch_length": 1}},
                "controls": False, "policies": ("all",), "budgets": (), "seeds": (0,),
                **{**RECIPE, "steps": 3500, "lr": 1e-2, "n_test": 512}},
    # the flagged probes with the twin's own flags, every policy at 10%
    "flags": {"probes": {"scheduled_event": {"level": "easy", "patch_length": 8},
                         "delayed_action": {"level": "hard", "patch_length": 8}},
              "policies": ("oracle", "event", "surprise", "random"), "budgets": (0.1,), "seeds": (0,),
              **{**RECIPE, "steps": 2000, "n_test": 1000}},
    # B's ordering variant at two levels, one seed: which level separates pure GDN from full attention (its pilot
    # ran the first design, rows tagged -pilot in results/probes_gpu.md)
    "order": {"probes": {f"action_sequence@{level}": {"probe": "action_sequence", "level": level, "patch_length": 8,
                                                       "kv_rope_base": 10000.0} for level in ("medium", "hard")},
              "policies": ("oracle", "event", "surprise", "random"), "budgets": (0.1,), "seeds": (0,), **RECIPE},
    # E with 16 pairs, 4000 steps: at easy (4 pairs) pure GDN learns the recall too at 4000 steps (RS 0.655
    # against full attention's 0.866), so its capacity is what the harder level tests
    "e_medium": {"probes": {"mqar@medium": {"probe": "mqar", "level": "medium", "patch_length": 1, "steps": 4000}},
                 "policies": ("oracle", "event", "surprise", "random"), "budgets": (0.1,), "seeds": (0, 1, 2),
                 **RECIPE},
    # C and A medium at 4000 steps: at 1500 only the oracle learned them; E medium's full attention needed 4000
    # (and learned in 1 of 3 seeds). A medium's cells took 460 s for 1500 eager steps under 56 workers on 2 GPUs:
    # run a_long with few workers and CUDA graphs, or it outlasts a 10-minute device call
    "c_long": {"probes": {"cross_channel_binding": {"level": "medium", "patch_length": 4, "steps": 4000}},
               "policies": ("oracle", "surprise", "random"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE},
    "a_long": {"probes": {"rare_motif": {"level": "medium", "patch_length": 16, "steps": 4000}},
               "policies": ("oracle", "surprise", "random"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE},
    # C medium at 4000 steps learned nothing but the oracle (H200, 2026-12-01: full attention's loss curve matched
    # pure GDN's to 0.01): four times the sequences per step (1M in all, Zoology's MQAR sees ~6M), and A medium's
    # controls at 4000 steps (a_long's first cells: the same names, so a_long reuses them)
    "c_batch": {"probes": {"cross_channel_binding": {"level": "medium", "patch_length": 4, "steps": 4000}},
                "policies": ("oracle",), "budgets": (), "seeds": (0, 1, 2), **{**RECIPE, "batch_size": 256}},
    "a_controls": {"probes": {"rare_motif": {"level": "medium", "patch_length": 16, "steps": 4000}},
                   "policies": (), "budgets": (), "seeds": (0, 1, 2), **RECIPE},
    # C between easy and medium (8 events at lag 0) for 8000 steps: on the CPU at 3000 steps of 32 full attention
    # (0.044) and pure GDN (0.036) had both begun to learn it, neither ahead; cells this long span device calls
    "c_mid": {"probes": {"cross_channel_binding@mid": {"probe": "cross_channel_binding",
                                                      "level": "medium:events=8,lag=0", "patch_length": 4,
                                                      "steps": 8000}},
              "policies": ("oracle", "surprise", "random"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE},
    # c_mid at 8000 steps (H200, 2026-12-01): full attention pulled ahead of pure GDN on one seed of three, from
    # about step 5600 (loss 0.51 against 0.74 at 8000); twice as long, to see whether the others follow
    "c_mid_long": {"probes": {"cross_channel_binding@mid": {"probe": "cross_channel_binding",
                                                           "level": "medium:events=8,lag=0", "patch_length": 4,
                                                           "steps": 16000}},
                   "policies": ("oracle", "surprise", "random"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE},
    # A easy with the scratchpad's own query / key projections (HamConfig.kv_own_qk): at 4000 steps of 64 full
    # attention's read stayed uniform over the motif with the shared ones (H200 learnability: full attention 0.203,
    # pure GDN 0.258, oracle 0.406)
    "a_ownqk": {"probes": {"rare_motif@easy": {"probe": "rare_motif", "level": "easy", "patch_length": 16,
                                               "steps": 4000, "kv_own_qk": True}},
                "policies": ("oracle",), "budgets": (), "seeds": (0, 1, 2), **RECIPE},
    "tiny": {"probes": {"mqar": {"level": "easy", "patch_length": 4}}, "policies": ("random", "oracle"),
             "budgets": (0.25,), "seeds": (0,), "steps": 2, "batch_size": 4, "lr": 3e-3, "d_model": 16,
             "n_layers": 1, "n_test": 8, "bind_channels": True},
}
# c_mid_long's routers that could find C's binding events where surprise (capture 0.12 at 10%) does not: the learned
# score (trained through the kept values) and the forecast's uncertainty; its controls are c_mid_long's
PRESETS["c_routers"] = {**PRESETS["c_mid_long"], "policies": ("learned", "uncertainty")}
# the three probes whose targets are met, at their reported recipes, seeds 3-5: the report marks parts of each within
# two standard errors of the bar (full attention's recall differs by seed), so six seeds per cell
_MET = {"action_sequence": PROBE_SETTINGS["action_sequence"], "scheduled_event": PROBE_SETTINGS["scheduled_event"],
        **PRESETS["e_medium"]["probes"]}
PRESETS["seeds_met"] = {"probes": _MET, "policies": ("oracle", "event"), "budgets": (), "seeds": (3, 4, 5), **RECIPE}
# E medium trained 1.5x longer, controls and event routing: at 4000 steps full attention learned MQAR in 1 of 6 seeds,
# so E's "event routing >= 90% of full attention" rested on a weak control (2026-12-01 seeds_met)
PRESETS["e_6000"] = {"probes": {"mqar@medium": {**PRESETS["e_medium"]["probes"]["mqar@medium"], "steps": 6000}},
                     "policies": ("event",), "budgets": (), "seeds": (0, 1, 2), **RECIPE}
# e_6000's control alone at seeds 3-5: how often full attention learns E medium at 6000 steps
PRESETS["e_6000_full"] = {**PRESETS["e_6000"], "controls": False, "policies": ("all",), "seeds": (3, 4, 5)}
# C at the issue's 16 binding events (lag 0, as c_mid_long) for 16000 steps: at 8 events pure GDN's 2 x 32 x 32
# state held 63% of full attention's recall; twice the bindings (and decoys) on smooth, correlated key shapes
# should overfill it while full attention's read does not fill. About 1000 s a cell: it spans two device calls
PRESETS["c16"] = {"probes": {"cross_channel_binding@16": {"probe": "cross_channel_binding",
                                                         "level": "medium:events=16,lag=0", "patch_length": 4,
                                                         "steps": 16000}},
                  "policies": ("oracle", "random", "learned"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# C between c_mid_long's 8 binding events (pure GDN held 63% of full attention, uncertainty routing at 10% 95%) and
# c16's 16 (nothing but the oracle learned): 12, for a level where the recurrent state no longer holds the bindings
# but full attention still learns them; the routers that came within 90% at 8. About 800 s a cell: two device calls
PRESETS["c12"] = {"probes": {"cross_channel_binding@12": {"probe": "cross_channel_binding",
                                                         "level": "medium:events=12,lag=0", "patch_length": 4,
                                                         "steps": 16000}},
                  "policies": ("oracle", "uncertainty", "random"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# C easy (4 binding events at lag 0, 192 steps = 48 tokens of 4), controls only, one seed: a CPU pilot of a C
# curriculum after A's (a read learned on few events carrying over to 16, where full attention learns nothing in
# 16000 steps): `run --preset c_easy --device cpu --workers 2`, then probe_transfer.py at 8 and 16 events. (CPU,
# 2026-12-02: at 4 events full attention 0.330, pure GDN 0.301; at 16 events zero-shot 0.178 and 0.147, where
# c16's cells trained there reached 0.085 / 0.086: the few-event stage helps, 4000 steps do not teach the read)
PRESETS["c_easy"] = {"probes": {"cross_channel_binding@easy": {"probe": "cross_channel_binding", "level": "easy",
                                                               "patch_length": 4, "steps": 4000}},
                     "policies": (), "budgets": (0.1,), "seeds": (0,), **RECIPE}
# c_easy for 12000 steps (CPU, about 45 minutes a cell at 2 workers): whether more steps at 4 events teach the read.
# (CPU, 2026-12-02: full attention's loss fell from 0.70 to 0.40 at steps 3500-4500 and it learned the binding,
# RS 0.474, channel-swap control 0.001; zero-shot at 16 events 0.465, pure GDN 0.173 = 37%)
PRESETS["c_easy_long"] = {**PRESETS["c_easy"], "probes": {"cross_channel_binding@easy": {
    **PRESETS["c_easy"]["probes"]["cross_channel_binding@easy"], "steps": 12000}}}
# C at the issue's 16 binding events with c_easy_long's read learned first: 12000 steps at 4 events, then 4000 at
# 16 (where the thresholds adapt and the read meets 16 events); controls, oracle and the routers at 10%, unguided.
# (H200, 2026-12-03, 18 cells in two calls, ~28 steps/s a cell at 4 events and ~12 at 16: full attention learns the
# binding on every seed, 0.490, but so does pure GDN, 0.376 = 77%; uncertainty at 10% 0.399 = 81%. The slots touch,
# so binding events fill half the tokens and decoys the other half: a router at 10% keeps 13-15% of them)
PRESETS["c16_curriculum"] = {"probes": {"cross_channel_binding@16": {
    "probe": "cross_channel_binding", "level": "medium:events=16,lag=0", "patch_length": 4, "steps": 16000,
    "curriculum": "easy", "curriculum_steps": 12000}},
    "policies": ("oracle", "uncertainty", "surprise", "random"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# C at c_mid_long's 8 events, each slot 16 background steps wider (the `spacing` knob: 144 patch tokens instead of
# 80): at 8 events pure GDN held 63% of full attention because its state carries 8 bindings over a short context;
# the same bindings farther apart should cost the state, not attention's key match, more. Not run yet (about 800 s
# for its 12 cells at 15 workers by c_mid_long's rate: two device calls)
PRESETS["c8_far"] = {"probes": {"cross_channel_binding@8far": {"probe": "cross_channel_binding",
                                                              "level": "medium:events=8,lag=0,spacing=16",
                                                              "patch_length": 4, "steps": 16000}},
                     "policies": ("oracle", "uncertainty"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# A along the capacity axis that separated E (MQAR): easy's 1024 steps (64 patch tokens) with 7 distractors instead
# of 1, 8000 steps. At easy (1 distractor) pure GDN's state holds both motifs and matched full attention (H200, one
# seed, 4000 steps: 0.258 against 0.203); eight motifs (24 of the 64 tokens) should overfill it while attention still
# searches 64 tokens. Surprise at 10% beside the controls (PROBES.md: it should keep a motif's onset, not its body).
# Run 2026-12-02 (results/probes_gpu.md): it separates, full attention 0.341, pure GDN 0.008, oracle 0.423
PRESETS["a8_easy"] = {"probes": {"rare_motif@easy8": {"probe": "rare_motif", "level": "easy:distractors=7",
                                                     "patch_length": 16, "steps": 8000}},
                      "policies": ("oracle", "surprise"), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# a8_easy separated A (H200, 2026-12-02: full attention 0.341, pure GDN 0.008), but its 8 motifs fill 24 of 64
# tokens (37.5%), so a router at 10% holds the queried one only by chance. The same 8 motifs in medium's 4096-step
# contexts fill 24 of 256 tokens (9.4%): a router that keeps exactly the motifs fits the 10% budget. Controls first (a
# cut sweep still says whether full attention learns at 256 tokens), then four routers at 10%. Run it with
# WORKERS=12: a cut cell's loop state is about 2 MB, and more than ~15 of them do not travel beside the 25-MB tree
# (the 64-MiB limit). Cost not measured: a8_easy ran about 12 steps/s a cell at 24 workers; four times the tokens
# may take 2-4 device calls
PRESETS["a8_tenth"] = {"probes": {"rare_motif@medium8": {"probe": "rare_motif", "level": "medium:distractors=7",
                                                        "patch_length": 16, "steps": 8000}},
                       "policies": ("oracle", "surprise", "uncertainty", "learned", "random"), "budgets": (0.1,),
                       "seeds": (0, 1, 2), **RECIPE}
# a8_tenth (H200, 2026-12-02): at 256 tokens full attention learned nothing in 8000 steps (RS 0.003, its loss with
# pure GDN's throughout, 0.003 apart on the mean; oracle 0.422). But a8_easy's full attention, trained on 64
# tokens, kept 70-93% of its recall skill on a8_tenth's 256-token contexts (results/probe_transfer_a8_cpu.md, loop
# states at ~step 6400; 0.253 on the mean of 3 seeds): the read carries over. So the same level with a staged
# curriculum: 6000 steps of a8_easy's contexts, then 3000 of the 4096-step ones, where the routers' thresholds
# adapt to the sparse motifs and the read meets the long contexts. One cosine schedule spans both stages: the
# second runs at 35% of the peak learning rate falling to 10%, a fine-tune of what the first learned (a CPU pilot
# of such a second stage from a8_easy's cut states, results/probe_stage2_a8_cpu.md: full attention 0.335 -> 0.366
# on seed 0; surprise at 10% 0.016 / 0.001 / 0.069 -> 0.058 / 0.002 / 0.245 on seeds 0-2). Controls, oracle and
# the four routers at 10%. By a8_easy's and a8_tenth's rates (about 13 and 7.3 steps/s a cell at 21-24 workers)
# about 900 s a cell: two calls at WORKERS=21, the first cutting all 21 cells (their 42 MB of loop states travel
# beside the tree only without its 11-MB rows file: move it out of the tree for that call)
PRESETS["a8_curriculum"] = {"probes": {"rare_motif@medium8": {"probe": "rare_motif", "level": "medium:distractors=7",
                                                             "patch_length": 16, "steps": 9000,
                                                             "curriculum": "easy:distractors=7",
                                                             "curriculum_steps": 6000}},
                            "policies": ("oracle", "surprise", "uncertainty", "learned", "random"),
                            "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# a8_curriculum (H200, 2026-12-02, two calls): full attention 0.302, pure GDN 0.127 (42%), oracle 0.423,
# uncertainty at 10% 0.225 (74%; seed 1 0.349 at a realised 15% KV), surprise 0.121. Seeds 3-5 of the controls and
# of uncertainty routing, the best router there (H200, 2026-12-02): on six seeds full attention 0.335, pure GDN
# 0.072 (22%), uncertainty 0.180 (54%, at 11.0% KV)
PRESETS["a8_curriculum_seeds"] = {**PRESETS["a8_curriculum"], "policies": ("uncertainty",), "seeds": (3, 4, 5)}
# a8_curriculum's routers at 40% in the first stage, 10% in the second: in 64 tokens the 8 motifs fill 37.5%, so a
# 10% router holds the queried one by chance only and its model barely learns the read (seeds 3-5 at the end of that
# stage: uncertainty RS 0.00-0.06 at 64 tokens where full attention has 0.33-0.37, results/probe_transfer_a8seeds_
# cpu.md); at 40% it can hold every motif while the read is learned, and 10% holds them in 256 tokens (9.4%). The
# controls have no budget to change: their cells are a8_curriculum's (finished, skipped), and the report lends them
# to this recipe's table. 9 new cells (measured 2026-12-02: 12 such cells at WORKERS=12 ran 9000 steps in one
# 570-s call, about 18 steps/s a cell over both stages)
# a8_kv_curriculum (H200, 2026-12-02, seeds 0-5 via --seeds): surprise at 10% 0.205 = 61% of full attention's 0.335
# (0-99% on the same seed), uncertainty 0.145, random 0.114 (0.2 on three seeds): the seed still decides
PRESETS["a8_kv_curriculum"] = {**PRESETS["a8_curriculum"], "policies": ("uncertainty", "surprise", "random"),
                               "probes": {"rare_motif@medium8": {
                                   **PRESETS["a8_curriculum"]["probes"]["rare_motif@medium8"],
                                   "curriculum_budget": 0.4}}}
# a8_curriculum's routers guided in the first stage: the queried motif enters the scratchpad on top of the router's
# own 10% (curriculum_guide). a8_kv_curriculum's routers kept the motif and its wake on every seed, yet only some
# seeds' models learned to read it (the wake diagnostics, results/probe_wake_a8_cpu.md); with the motif always in
# memory the first stage teaches the read, the second has the router alone keep it. Random routing guided is the
# control: what the read is worth when the router keeps the motif by chance. Controls as for a8_kv_curriculum.
# (H200, 2026-12-02, seeds 0-5 via --seeds: uncertainty at 10% 0.296 = 88% of full attention, every seed 0.18-0.36;
# surprise 0.194, random 0.117; 12 cells in one 530-s call at WORKERS=12. Seeds 6-11 of uncertainty and the controls,
# 2026-12-03: on 12 seeds 0.282 = 91% of full attention's 0.310, pure GDN 15%; seeds 9-11, 9 cells at WORKERS=9, in
# two calls of 601 s and 97 s)
PRESETS["a8_guided_curriculum"] = {**PRESETS["a8_curriculum"], "policies": ("surprise", "uncertainty", "random"),
                                   "probes": {"rare_motif@medium8": {
                                       **PRESETS["a8_curriculum"]["probes"]["rare_motif@medium8"],
                                       "curriculum_guide": True}}}
# c16_curriculum's cells trained on where the bindings are sparse enough for a 10% scratchpad and far apart for the
# recurrent state: each slot 112 background steps wider (`spacing`, 1040 tokens of 4 steps), so the 16 bindings' 64
# tokens are 6% of them (with their 16 decoys 12%). Zero-shot there (CPU, n=256) full attention kept its read and pure
# GDN fell (see experiments/README.md, seventeenth session); 600 steps there, from each cell's finished weights
# (`init_from`: same policy, budget and seed), at a third of the sweep's learning rate, since they start trained.
# Run into a folder holding c16_curriculum's <cell>.final.pt files (slim carries them: weights without rows travel;
# results/probes/c16_curriculum_weights.tgz holds them) with WORKERS=9: at 1040 tokens a cell holds 5-15 GB of the
# H200's 140, and 18 ran out of memory (2026-12-03, after ~516 of the 600 steps, 1.7 steps/s a cell at 18 workers)
PRESETS["c16_spaced"] = {"probes": {"cross_channel_binding@16spaced": {
    "probe": "cross_channel_binding", "level": "medium:events=16,lag=0,spacing=112", "patch_length": 4,
    "steps": 600, "lr": 1e-3, "init_from": "c16_curriculum"}},
    "policies": PRESETS["c16_curriculum"]["policies"], "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# C where its target is read: 16 bindings spaced 496 steps apart (4112 tokens of 4; bindings and decoys fill 3.1%).
# Zero-shot there c16_curriculum's pure GDN held 25% of full attention, and surprise and uncertainty at 10% kept only
# 0.29-0.51 of the queried binding: their scores do not tell a binding from the background (results/probe_transfer_
# c16_far_calibrated_h200.md). 600 steps there from each c16_curriculum cell's finished weights, at a third of the
# sweep's learning rate and a quarter of its batch (16 x 4112 tokens: the memory of 64 x 1040, c16_spaced's), so
# every policy compared there was trained there. Controls and oracle here; the distilled router in c16_far_distilled.
# (H200, 2026-12-03, rev 9e604f8, 260-290 s a cell: full attention 0.475, pure GDN 0.330 = 70%: trained there the state
# holds the bindings, so C's target is read zero-shot at 496 instead; the oracle cells did not run)
PRESETS["c16_far"] = {"probes": {"cross_channel_binding@16far": {
    "probe": "cross_channel_binding", "level": "medium:events=16,lag=0,spacing=496", "patch_length": 4,
    "steps": 600, "lr": 1e-3, "batch_size": 16, "init_from": "c16_curriculum"}},
    "policies": ("oracle",), "budgets": (0.1,), "seeds": (0, 1, 2), **RECIPE}
# c16_far's stage for a router that learns which tokens attention reads (DistilledRouter, fitted to the attention of
# the query key's two tokens and the forecast's two, with every token kept): it starts from c16_curriculum's full
# attention of its seed (`init_policy`), whose read is learned, its router fresh, and routes 10% from the first step
# (H200, 2026-12-03: 0.381 at 9.9% KV, 80% of c16_far's full attention)
PRESETS["c16_far_distilled"] = {"probes": {"cross_channel_binding@16far": {
    **PRESETS["c16_far"]["probes"]["cross_channel_binding@16far"], "init_policy": "all"}},
    "policies": ("distilled",), "budgets": (0.1,), "seeds": (0, 1, 2), "controls": False, **RECIPE}
# c16_far_distilled's router fitted to c16_curriculum's finished full attention with every other weight frozen
# (`routers_only`), at the level that model was trained on: the model routed for is the one that learned the read,
# and no policy is trained at the level it is scored at (probe_transfer.py scores all of them zero-shot at spacing
# 112 and 496, where pure GDN falls to 50% and 25% of full attention). 1000 steps of 32 (a CPU pilot of seed 0:
# 133 s; RS 0.374 at 496 against full attention's 0.339 on 32 sequences). CPU, 2026-12-03, 150-200 s a cell; at 496
# (H200, 1000 sequences, calibrated to 10%) 0.347 = 83% of full attention's 0.419, pure GDN 25%
PRESETS["c16_distilled_fit"] = {"probes": {"cross_channel_binding@16": {
    "probe": "cross_channel_binding", "level": "medium:events=16,lag=0", "patch_length": 4, "steps": 1000,
    "batch_size": 32, "init_from": "c16_curriculum", "init_policy": "all", "routers_only": True}},
    "policies": ("distilled",), "budgets": (0.1,), "seeds": (0, 1, 2), "controls": False, **RECIPE}
# c16_distilled_fit with a router four times wider, fitted twice as long: in its cells the first layer's router put
# the read binding token in its top 10% of the 4112 tokens at spacing 496 on 81% of seed 0's sequences; this one (a
# CPU pilot of seed 0) on 100%. H200, 2026-12-03, 6 cells with c16_distilled_fit64_far in one 274-s call: at 496
# (calibrated to 10%, 1000 sequences) 0.360 / 0.433 / 0.388 = 94% of full attention, pure GDN 25%: C's target
# (results/probe_transfer_c16_distilled_fit64_496_h200.md); at its own level 0.254 in-cell, where 10% cannot hold the
# bindings and their decoys
PRESETS["c16_distilled_fit64"] = {"probes": {"cross_channel_binding@16": {
    **PRESETS["c16_distilled_fit"]["probes"]["cross_channel_binding@16"], "steps": 2000, "router_hidden": 64}},
    **{k: v for k, v in PRESETS["c16_distilled_fit"].items() if k != "probes"}}
# c16_distilled_fit64's router fitted where it is scored, 496 steps apart (4112 tokens, batch 16 as c16_far): the
# teacher is full attention's own read at that spacing, and the second layer's router sees the inputs it will route
# (H200, 2026-12-03: 0.336 / 0.438 / 0.439 = 96% of full attention's zero-shot 0.419 at 10% KV, calibrated)
PRESETS["c16_distilled_fit64_far"] = {"probes": {"cross_channel_binding@16far": {
    **PRESETS["c16_distilled_fit64"]["probes"]["cross_channel_binding@16"], "steps": 1000, "batch_size": 16,
    "level": PRESETS["c16_far"]["probes"]["cross_channel_binding@16far"]["level"]}},
    **{k: v for k, v in PRESETS["c16_distilled_fit"].items() if k != "probes"}}
# C with a binding inside one patch token: at patch 16 an event's key shape (8 steps on channel 1) and value level (8
# steps on channel 0, lag 0) share a token, so a binding is one scratchpad slot, and 16 bindings spaced 496 steps
# apart (`medium:events=16,lag=0,spacing=496`, 1028 tokens) fill 1.6% of the tokens (3.1% with their decoys), under
# what a 10% router can keep. A CPU pilot first: does full attention learn the read at easy (12 tokens), controls
# only, seed 0 (`run --preset c_easy_p16 --device cpu --workers 2`), then probe_transfer.py at the spaced level.
# (CPU, 2026-12-03, 1070 s a cell: it does not. Full attention RS 0.210, pure GDN 0.213, their losses alike at every
# step, and the channel-swap controls stay at 0.20: both learned a level from the shape on any channel, no binding.
# The query's key fills the second half of its token where the bindings' keys fill the first: at patch 16 the match
# must also undo that shift. Not taken to the GPU)
PRESETS["c_easy_p16"] = {"probes": {"cross_channel_binding@easyp16": {
    "probe": "cross_channel_binding", "level": "easy", "patch_length": 16, "steps": 8000}},
    "policies": (), "budgets": (0.1,), "seeds": (0,), **RECIPE}
FINAL_SUFFIX = ".final.pt"  # a finished cell's trained weights beside its rows (a loop state without the optimizer)
RESUMABLE_START = 180.0  # seconds before the deadline under which no cell starts (its first state comes after 60)
ORDER = ("all", "none", "oracle", "event")  # controls first: a sweep cut short still says the most


def cells(preset: dict, seeds=None) -> list[dict]:
    """Every cell of a preset (``seeds`` overrides its seeds): probe, level, patch length, policy, nominal budget
    (NaN for oracle / event), seed and the training recipe, controls first, then budgets nearest 10% first."""
    from tsham.probes.runner import check_curriculum, probe_cells

    out = []
    for name, setting in preset["probes"].items():
        probe = setting.get("probe", name)
        recipe = {k: setting.get(k, preset.get(k, RECIPE[k])) for k in RECIPE}
        if recipe["curriculum"] is not None and recipe["curriculum_steps"] is None:  # the cell's name counts them
            raise ValueError(f"{name}: a curriculum needs its curriculum_steps in the preset")
        check_curriculum(probe, recipe["curriculum"], recipe["curriculum_steps"], recipe["steps"], preset["policies"],
                         recipe["curriculum_budget"], recipe["curriculum_guide"])
        pairs = probe_cells(probe, setting["level"], preset["policies"], preset["budgets"],
                            preset.get("controls", True))
        for seed in preset["seeds"] if seeds is None else seeds:
            out += [{"probe": probe, "level": setting["level"], "patch_length": setting["patch_length"],
                     "policy": p, "budget": b, "seed": seed, **recipe, **_untouched(b)} for p, b in pairs]
    for cell in out:
        if cell["init_from"] is not None:
            initial_cell(cell)  # names a missing preset or cell now, not in a worker
    return sorted(out, key=priority)


def initial_cell(cell: dict) -> dict:
    """The cell of preset ``cell["init_from"]`` whose finished weights ``cell`` starts from: the same probe, policy,
    budget and seed, trained by that preset's recipe (a further stage on another level: the sweep's way to train a
    cell in more than two stages); with ``cell["init_policy"]``, that policy's cell of the same probe and seed at
    whatever budget it has (full attention's). Raises ``ValueError`` when no preset or cell matches."""
    name, policy = cell["init_from"], cell.get("init_policy") or cell["policy"]
    if name not in PRESETS:
        raise ValueError(f"init_from {name!r}: no such preset; known: {sorted(PRESETS)}")
    same_budget = policy == cell["policy"]
    found = [c for c in cells(PRESETS[name], [cell["seed"]])
             if c["probe"] == cell["probe"] and c["policy"] == policy and c["seed"] == cell["seed"]
             and (not same_budget or c["budget"] == cell["budget"]
                  or math.isnan(c["budget"]) and math.isnan(cell["budget"]))]
    if len(found) != 1:
        raise ValueError(f"init_from {name!r}: {len(found)} cells of {cell['probe']}, policy {policy}"
                         + (f", budget {cell['budget']:g}" if same_budget else "")
                         + f", seed {cell['seed']} (one needed to start from)")
    return found[0]


def _untouched(budget: float) -> dict:
    """What a cell's recipe loses where its policy has no budget to set (controls, oracle, event): the curriculum
    budget and guide change nothing in their training, so their cells are those of the recipe without them (one
    run, one name; the report lends them to the routers' table,
    :func:`tsham.experiments.probe_report.lend_controls`)."""
    return {} if 0.0 < budget < 1.0 else {"curriculum_budget": None, "curriculum_guide": False}


def priority(cell: dict) -> tuple:
    """Run order: the controls and the 10% cells of every seed first (what #6's targets read), then the other
    budgets, nearest 10% first; seeds inside each rank, so a sweep cut short has every seed of what it ran."""
    control = ORDER.index(cell["policy"]) if cell["policy"] in ORDER else len(ORDER)
    distance = abs(math.log(cell["budget"] / 0.1)) if 0 < cell["budget"] < 1 else 0.0
    return distance, control, cell["seed"]


def recipe_tag(cell: dict) -> str:
    """The training recipe of a cell in a few characters, e.g. ``d64x2-lr0.003-1500x64-n1000``: cells of
    different presets that share probe, policy, budget and seed stay apart in files and tables."""
    from tsham.probes.generators import level_slug

    return (f"d{cell['d_model']}x{cell['n_layers']}-lr{cell['lr']:g}-{cell['steps']}x{cell['batch_size']}"
            f"-n{cell['n_test']}" + ("-bind" if cell.get("bind_channels") else "")
            + (f"-rope{cell['kv_rope_base']:g}" if cell.get("kv_rope_base") else "")
            + ("-ownqk" if cell.get("kv_own_qk") else "")
            + (f"-h{cell['router_hidden']}" if cell.get("router_hidden") else "")
            + (f"-from-{level_slug(cell['curriculum'])}x{cell['curriculum_steps']}" if cell.get("curriculum") else "")
            + (f"-kv{cell['curriculum_budget']:g}" if cell.get("curriculum_budget") is not None else "")
            + ("-guided" if cell.get("curriculum_guide") else "")
            + (f"-after-{cell['init_from']}" if cell.get("init_from") else "")
            + (f"-{cell['init_policy']}" if cell.get("init_from") and cell.get("init_policy") else "")
            + ("-routersonly" if cell.get("routers_only") else ""))


def cell_name(cell: dict) -> str:
    """A cell's file name: probe, level, patch length, policy, budget ("fixed" for oracle / event), seed, recipe."""
    budget = "fixed" if math.isnan(cell["budget"]) else f"{cell['budget']:g}"
    from tsham.probes.generators import level_slug

    return (f"{cell['probe']}-{level_slug(cell['level'])}-p{cell['patch_length']}-{cell['policy']}-{budget}"
            f"-s{cell['seed']}-{recipe_tag(cell)}")


def run_cell(cell: dict, out: str, device: str, cuda_graph: bool = False) -> str:
    """Trains and scores one cell (in a worker process); writes its rows and its log; returns its name.
    ``cuda_graph``: replay each training step as a CUDA graph (:func:`train_loop`); the log records the warnings
    training raised (a capture that failed falls back to eager steps with one)."""
    import torch
    from tsham.experiments.common import warnings_seen
    from tsham.probes.generators import VARIED_LENGTH
    from tsham.probes.resume import save_loop_state
    from tsham.probes.runner import TEST_SEED_OFFSET, evaluate_probe, train_probe_model, with_state_utility

    torch.set_num_threads(1)  # many workers share the machine's cores
    started = time.monotonic()
    config = cell_config(cell)
    history: list = []
    cuda_graph = cuda_graph and cell["probe"] not in VARIED_LENGTH  # its batches change shape: trains eagerly
    name = cell_name(cell)
    folder = Path(out) / "cells"
    checkpoint = folder / f"{name}.ckpt"  # a cell cut with its device call resumes from here in the next one
    resumed = _saved_step(checkpoint)
    init = None
    if cell.get("init_from") is not None:
        init = folder / f"{cell_name(initial_cell(cell))}{FINAL_SUFFIX}"
        if not init.is_file():
            raise FileNotFoundError(f"{name} starts from {init.name}, not in {folder}: run preset "
                                    f"{cell['init_from']!r} into this run first (or copy its cells' weights here)")
    with warnings_seen() as seen:
        model = train_probe_model(cell["probe"], cell["level"], config, cell["steps"], cell["batch_size"],
                                  cell["lr"], seed=cell["seed"], device=device, history=history,
                                  curriculum=cell.get("curriculum"), curriculum_steps=cell.get("curriculum_steps"),
                                  curriculum_budget=cell.get("curriculum_budget"),
                                  curriculum_guide=bool(cell.get("curriculum_guide")),
                                  cuda_graph=cuda_graph, checkpoint=checkpoint, init=init,
                                  fresh_routers=cell.get("init_policy") not in (None, cell["policy"]),
                                  routers_only=bool(cell.get("routers_only")))
    trained = time.monotonic()
    if device.startswith("cuda"):
        # the training step's cached blocks and CUDA-graph pool back to the GPU before scoring: cells share it, and
        # at 1040 tokens 18 cells of 5-15 GB each ran it out of memory (c16_spaced, 2026-12-03)
        torch.cuda.empty_cache()
    labels = {k: cell[k] for k in ("probe", "level", "policy", "budget", "seed")}
    rows = evaluate_probe(model, cell["probe"], cell["level"], cell["n_test"], TEST_SEED_OFFSET + cell["seed"], labels,
                          device)
    # the state-utility probe on the first test sequences (up to 512: the ridge readouts need no more)
    rows = with_state_utility(rows, model, cell["probe"], cell["level"], max(8, min(512, cell["n_test"])),
                              TEST_SEED_OFFSET + cell["seed"], device)
    rows["patch_length"], rows["recipe"] = cell["patch_length"], recipe_tag(cell)
    # training seconds over every call the cell took (the history's clock resumes with it)
    seconds = history[-1][2] if history else trained - started
    # the trained weights, for scoring later at other levels or calibrated budgets (experiments/probe_transfer.py);
    # before the rows, which mark the cell done: a call cut between the two retrains it from its loop state
    save_loop_state(folder / f"{name}{FINAL_SUFFIX}", model, None, cell["steps"], cell["steps"], history, seconds)
    rows.to_csv(folder / f"{name}.csv.tmp", index=False)
    os.replace(folder / f"{name}.csv.tmp", folder / f"{name}.csv")  # a stopped sweep leaves no partial cell
    log = {**cell, "train_seconds": seconds, "resumed_at_step": resumed,
           "eval_seconds": time.monotonic() - trained,
           "cuda_graph": cuda_graph and device.startswith("cuda"), "warnings": seen, "loss": history,
           "parameters": sum(p.numel() for p in model.parameters())}
    (folder / f"{name}.json").write_text(json.dumps(log))
    checkpoint.unlink(missing_ok=True)
    checkpoint.with_name(checkpoint.name + ".tmp").unlink(missing_ok=True)  # a save cut mid-write
    return name


def cell_config(cell: dict, level: str | None = None):
    """A cell's probe model (:func:`tsham.probes.runner.probe_config`), its context sized for ``level`` (default:
    the cell's own level; a recency window is sized by it)."""
    from tsham.probes.runner import probe_config, probe_context_length

    return probe_config(cell["policy"], cell["budget"], patch_length=cell["patch_length"], d_model=cell["d_model"],
                        n_layers=cell["n_layers"],
                        context_length=probe_context_length(cell["probe"], level or cell["level"]),
                        bind_channels=cell["bind_channels"], kv_rope_base=cell.get("kv_rope_base", 0.0),
                        kv_own_qk=cell.get("kv_own_qk", False), router_hidden=cell.get("router_hidden"))


def _saved_step(checkpoint: Path) -> int:
    """The step a cell resumes at from its loop state (0 when it has none)."""
    from tsham.probes.resume import read_loop_state

    return int(read_loop_state(checkpoint)["next_step"]) if checkpoint.is_file() else 0


def run(args) -> None:
    """Runs every cell of ``args.preset`` (skipping cells already written under ``args.out``, resuming cut ones from
    their saved state) in ``args.workers`` processes; a failed cell is reported and the sweep goes on; no cell starts
    within :data:`RESUMABLE_START` seconds of ``args.minutes``."""
    from functools import partial

    from tsham.experiments.common import header, run_pool

    folder = Path(args.out) / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    every = {cell_name(c): c for name in args.preset for c in cells(PRESETS[name], args.seeds)}  # no repeats
    chosen = {"probe": getattr(args, "probes", None), "policy": getattr(args, "policies", None)}
    for (key, names), flag in zip(chosen.items(), ("--probes", "--policies"), strict=True):
        known = {c[key] for c in every.values()}
        if names and not set(names) <= known:
            raise SystemExit(f"{flag} {sorted(set(names) - known)} not in the presets {args.preset}; they have "
                             f"{sorted(known)}")
    every = sorted((c for c in every.values() if all(not names or c[key] in names for key, names in chosen.items())),
                   key=priority)
    (Path(args.out) / "sweep.json").write_text(json.dumps({**header(), "presets": args.preset, "seeds": args.seeds,
                                                           "probes": chosen["probe"], "policies": chosen["policy"],
                                                           "cells": len(every)}, indent=1))
    todo = [c for c in every if not (folder / f"{cell_name(c)}.csv").is_file()]
    print(f"{len(every) - len(todo)} cells already done", flush=True)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else math.inf
    # a cell saves its state every minute, so one that would outlast the deadline still gains if it starts with a few
    # minutes left
    run_pool(todo, partial(run_cell, out=args.out, device=args.device, cuda_graph=args.cuda_graph), cell_name,
             args.workers, deadline, args.device, resumable=RESUMABLE_START)


def collect(args) -> None:
    """Concatenates the cells' rows into one table (CSV, gzip by suffix) and their logs (recipe, timings, loss
    curves) into one JSON beside it: ``x_rows.csv.gz`` -> ``x_cells.json``."""
    import pandas as pd

    folder = Path(args.run) / "cells"
    finished = [f for f in sorted(folder.glob("*.csv")) if f.stat().st_size]  # slim placeholders are empty
    frames = [pd.read_csv(f) for f in finished]
    if not frames:
        raise SystemExit(f"no finished cells under {folder}")
    logs = [json.loads(f.with_suffix(".json").read_text()) for f in finished if f.with_suffix(".json").is_file()]
    stem = Path(args.output).name.split(".")[0].removesuffix("_rows")
    log_file = Path(args.output).with_name(f"{stem}_cells.json")
    if args.append:  # a run that holds only the new cells (e.g. a slim copy the device filled), onto the table
        if not Path(args.output).is_file():
            raise SystemExit(f"--append: no table {args.output} to add to (collect without --append makes one)")
        old = pd.read_csv(args.output)

        def cells_of(frame):  # numbers as floats, so that 4 and 4.0 (a column read with a NaN) are one cell
            keys = frame[["probe", "level", "policy", "budget", "seed", "patch_length", "recipe"]].drop_duplicates()
            keys = keys.astype({"budget": float, "seed": float, "patch_length": float})
            return set(map(tuple, keys.astype(str).to_numpy()))

        have = cells_of(old)
        again = {k for f in frames for k in cells_of(f) if k in have}
        if again:
            raise SystemExit(f"{args.output} already holds {len(again)} of these cells, e.g. {sorted(again)[0]}")
        frames = [old, *frames]
        logs = json.loads(log_file.read_text()) + logs
    pd.concat(frames, ignore_index=True).to_csv(args.output, index=False, float_format="%.5g")
    log_file.write_text(json.dumps(logs))
    print(f"{len(finished)} cells -> {args.output} ({len(logs)} logs in all)")


def slim(args) -> None:
    """Copies a run's cell logs and an empty placeholder of each cell's rows into ``args.to``, plus the loop state
    of each unfinished cell: all a resumed run needs to skip finished cells and continue cut ones, in kilobytes and
    ~2 MB per cut cell (the device's working tree is small). Finished cells' weights stay behind, but weights
    without their cell's rows in the run (another preset's, which this run's ``init_from`` cells start from) travel."""
    source, target = Path(args.run) / "cells", Path(args.to) / "cells"
    target.mkdir(parents=True, exist_ok=True)
    finished = sorted(source.glob("*.csv"))
    for rows in finished:
        (target / rows.name).write_bytes(b"")
        log = rows.with_suffix(".json")
        if log.is_file():
            (target / log.name).write_bytes(log.read_bytes())
    cut = [f for f in sorted(source.glob("*.ckpt")) if not f.with_suffix(".csv").is_file()]
    starts = [f for f in sorted(source.glob(f"*{FINAL_SUFFIX}"))
              if not f.with_name(f.name[:-len(FINAL_SUFFIX)] + ".csv").is_file()]
    for state in cut + starts:
        (target / state.name).write_bytes(state.read_bytes())
    # a slim copy reused from an earlier call: its old loop states and any weights trained into it stay behind
    for stale in [*target.glob("*.ckpt"), *target.glob("*.ckpt.tmp"), *target.glob(f"*{FINAL_SUFFIX}"),
                  *target.glob(f"*{FINAL_SUFFIX}.tmp")]:
        if stale.name not in {f.name for f in cut + starts}:
            stale.unlink()
    size = sum(f.stat().st_size for f in cut + starts) / 2**20
    print(f"{len(finished)} finished cells -> {target} (placeholders), {len(cut)} cut cells' loop states and "
          f"{len(starts)} other cells' weights to start from ({size:.1f} MiB)")


def merge(args) -> None:
    """Copies the cells a device call finished (non-empty rows, their logs and weights) from ``args.back`` into the run
    ``args.run``, and the loop states of the cells it cut (the next call resumes them); placeholders are skipped,
    a finished cell already in the run is never overwritten, and a finished cell's loop state is dropped."""
    source, target = Path(args.back) / "cells", Path(args.run) / "cells"
    target.mkdir(parents=True, exist_ok=True)
    new = [f for f in sorted(source.glob("*.csv")) if f.stat().st_size and not (target / f.name).is_file()]
    for rows in new:
        for path in (rows, rows.with_suffix(".json"), rows.with_name(rows.stem + FINAL_SUFFIX)):
            if path.is_file():
                (target / path.name).write_bytes(path.read_bytes())
        (target / rows.with_suffix(".ckpt").name).unlink(missing_ok=True)
    for weights in source.glob(f"*{FINAL_SUFFIX}"):  # the weights of a cell whose rows came back before them
        if not (target / weights.name).is_file():
            (target / weights.name).write_bytes(weights.read_bytes())
    cut = [f for f in sorted(source.glob("*.ckpt")) if not (target / f.with_suffix(".csv").name).is_file()
           and _saved_step(f) >= _saved_step(target / f.name)]  # never an older state over a newer one
    for state in cut:
        (target / state.name).write_bytes(state.read_bytes())
    print(f"{len(new)} new cells -> {target}, {len(cut)} cut cells' loop states")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--preset", nargs="+", choices=sorted(PRESETS), default=["full"])
    r.add_argument("--seeds", type=int, nargs="+", help="run these seeds of the presets only")
    r.add_argument("--probes", nargs="+", help="run these probes of the presets only")
    r.add_argument("--policies", nargs="+", help="run these policies of the presets only (controls: none, all)")
    r.add_argument("--workers", type=int, default=4)
    r.add_argument("--device", default="cuda")
    r.add_argument("--cuda-graph", action="store_true", help="replay each training step as a CUDA graph")
    r.add_argument("--minutes", type=float, help="start no cell in the last 3 minutes of this many (a cell cut at "
                   "the end resumes from its saved state in the next run)")
    r.add_argument("--out", required=True)
    c = sub.add_parser("collect")
    c.add_argument("run")
    c.add_argument("--output", required=True, help="rows table (.csv or .csv.gz)")
    c.add_argument("--append", action="store_true", help="add the run's cells to an existing table (and its logs)")
    s = sub.add_parser("slim", help="copy a run's logs and placeholders of its finished cells (to carry)")
    s.add_argument("run")
    s.add_argument("to")
    m = sub.add_parser("merge", help="copy the cells a device call finished into the run")
    m.add_argument("back", help="the run folder that came back")
    m.add_argument("run")
    p = sub.add_parser("report")
    p.add_argument("rows")
    p.add_argument("--name", default="probes")
    p.add_argument("--results", default=None, help="folder of the report (default: experiments/results)")
    p.add_argument("--plots", default=None, help="folder of the frontier PNGs (default: <results>/probes)")
    p.add_argument("--note", help="where and how the rows were made (machine, recipe), for the report's header")
    args = parser.parse_args()
    if args.what == "report":
        from tsham.experiments.probe_report import report

        report(args)
    else:
        {"run": run, "collect": collect, "slim": slim, "merge": merge}[args.what](args)


if __name__ == "__main__":
    main()
