import warnings

import pytest
import torch
from tsham.probes.runner import probe_config, probe_context_length, train_loop, train_probe_model

from tsham.training.cuda_graph import GraphedStep


def _tiny_config(policy: str = "surprise"):
    return probe_config(policy, 0.25, patch_length=4, d_model=16, n_layers=1,
                        context_length=probe_context_length("mqar", "easy"), bind_channels=True)


def test_graphed_step_needs_cuda_and_a_warmup():
    with pytest.raises(ValueError, match="CUDA device"):
        GraphedStep(lambda batch: torch.zeros(()), torch.device("cpu"))
    with pytest.raises(ValueError, match="warmup"):
        GraphedStep(lambda batch: torch.zeros(()), torch.device("cuda"), warmup=0)


def test_varied_length_probe_and_cuda_graph_refused():
    with pytest.raises(ValueError, match="fixed shapes"):
        train_probe_model("action_sequence", "easy", _tiny_config(), steps=2, batch_size=2, cuda_graph=True,
                          device="cuda")


def test_cuda_graph_flag_is_eager_on_cpu():
    """On the CPU the flag changes nothing: the same seed trains the same weights."""
    a = train_probe_model("mqar", "easy", _tiny_config(), steps=3, batch_size=4, cuda_graph=True)
    b = train_probe_model("mqar", "easy", _tiny_config(), steps=3, batch_size=4)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def _regression(seed: int, device: str):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).to(device)
    w = torch.randn(5, 1)

    def draw(step: int) -> dict:
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(33, 5, generator=g)  # odd batch size
        return {"x": x, "y": x @ w + 0.1 * torch.randn(33, 1, generator=g)}

    def loss(m, batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        return (m(batch["x"]) - batch["y"]).pow(2).mean()

    return model, draw, loss


def _no_failed_capture(caught) -> None:
    """The graphed run really replayed its step: a failed capture would train eagerly and match trivially."""
    assert not [w for w in caught if "capture failed" in str(w.message)]


@pytest.mark.gpu
def test_graphed_training_matches_eager():
    """Replayed steps compute what eager steps compute: same weights after 40 steps (AdamW's capturable variant
    keeps its scalars in fp32 tensors), and the loss falls."""
    states, histories = [], []
    for graph in (False, True):
        model, draw, loss = _regression(0, "cuda")
        history: list = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_loop(model, draw, loss, 40, 1e-2, history=history, cuda_graph=graph)
        _no_failed_capture(caught)
        states.append({k: v.cpu() for k, v in model.state_dict().items()})
        histories.append(history)
    torch.testing.assert_close(states[0], states[1], rtol=1e-4, atol=1e-5)
    assert histories[1][-1][1] < 0.5 * histories[1][0][1]


@pytest.mark.gpu
def test_graphed_probe_model_matches_eager():
    """A probe model (HAM layers, a controlled router) trained with and without the graph: same weights and the
    same router thresholds (buffers updated in place inside the graph)."""
    states = []
    for graph in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = train_probe_model("mqar", "easy", _tiny_config(), steps=12, batch_size=8, device="cuda",
                                      cuda_graph=graph)
        _no_failed_capture(caught)
        states.append({k: v.cpu() for k, v in model.state_dict().items()})
    assert any(k.endswith("router.tau") for k in states[0])
    torch.testing.assert_close(states[0], states[1], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("level, stage", [("medium", {}), ("easy", {"curriculum_budget": 0.5}),
                                          ("easy", {"curriculum_guide": True})])
def test_graphed_curriculum_recaptures_at_the_next_stage_and_matches_eager(monkeypatch, level, stage):
    """A staged curriculum changes the context length once (medium after easy), or only the routers' target (a
    curriculum budget: surprise at 50% then 25%, on one shape; a captured graph holds the target's quantile rank
    fixed), or the guide (the needles routed on top in the first stage only): either way the loop captures a second
    graph at the switch (two graphs, both replayed) and trains what the eager loop trains."""
    import tsham.training.cuda_graph as cuda_graph

    steps = []

    class Counted(cuda_graph.GraphedStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            steps.append(self)

    monkeypatch.setattr(cuda_graph, "GraphedStep", Counted)
    states = []
    for graph in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = train_probe_model("mqar", level, _tiny_config(), steps=14, batch_size=8, device="cuda",
                                      curriculum="easy", curriculum_steps=6, **stage,
                                      cuda_graph=graph)
        _no_failed_capture(caught)
        states.append({k: v.cpu() for k, v in model.state_dict().items()})
    torch.testing.assert_close(states[0], states[1], rtol=1e-3, atol=1e-4)  # the routers' thresholds among them
    assert len(steps) == 2 and all(step.captured for step in steps)  # 6 + 8 steps: each stage past its warm-up


@pytest.mark.gpu
def test_failed_capture_trains_on_eagerly():
    model, draw, loss = _regression(1, "cuda")

    def syncing_loss(m, batch):
        value = loss(m, batch)
        assert value.item() >= 0  # reads the device: a capture refuses it
        return value

    history: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_loop(model, draw, syncing_loss, 10, 1e-2, history=history, cuda_graph=True)
    assert any("capture failed" in str(w.message) for w in caught)
    assert history[-1][1] < history[0][1]


@pytest.mark.gpu
def test_graphed_step_replays_and_refuses_a_new_shape():
    step = GraphedStep(lambda batch: batch["x"].sum(), torch.device("cuda"), warmup=1)
    assert float(step({"x": torch.ones(3, 2)})) == 6.0 and not step.captured
    assert float(step({"x": torch.full((3, 2), 2.0)})) == 12.0 and step.captured  # captured, then replayed
    assert float(step({"x": torch.full((3, 2), 3.0)})) == 18.0
    with pytest.raises(ValueError, match=r"batch\['x'\].*\(3, 2\)"):
        step({"x": torch.ones(4, 2)})


@pytest.mark.gpu
def test_graphed_training_resumes_from_a_cut(tmp_path):
    """A graphed loop cut after 20 of 40 steps and resumed from its loop state (a fresh model and optimizer, the
    learning rate tensor the new capture reads) ends where the uncut graphed loop ends."""
    model, draw, loss = _regression(0, "cuda")
    train_loop(model, draw, loss, 40, 1e-2, cuda_graph=True)
    uncut = {k: v.cpu() for k, v in model.state_dict().items()}

    class Cut(Exception):  # what a killed worker leaves: nothing after step 19
        pass

    drawn = []

    def cut_draw(step: int) -> dict:
        if step == 20:
            raise Cut
        return draw(step)

    def counted_draw(step: int) -> dict:
        drawn.append(step)
        return draw(step)

    checkpoint = tmp_path / "loop.ckpt"
    for attempt in ("cut", "resumed"):
        model, _, _ = _regression(0, "cuda")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                train_loop(model, cut_draw if attempt == "cut" else counted_draw, loss, 40, 1e-2, cuda_graph=True,
                           checkpoint=checkpoint, checkpoint_every=0.0)
            except Cut:
                assert attempt == "cut"
        _no_failed_capture(caught)
    assert drawn == list(range(20, 40))  # it resumed at step 20, not from the start
    torch.testing.assert_close({k: v.cpu() for k, v in model.state_dict().items()}, uncut, rtol=1e-4, atol=1e-5)
