import torch

from tsham.ham import HamConfig, HamStack
from tsham.training import make_optimizer, param_groups


def test_param_groups_split():
    stack = HamStack(HamConfig(d_model=16, num_heads=2, head_dim=8, router="learned"))
    decay, no_decay = param_groups(stack, 0.1)
    decay_ids = {id(p) for p in decay["params"]}
    layer = stack.blocks[0].mixer
    assert id(layer.qkv_proj.weight) in decay_ids and id(layer.router.mlp[0].weight) in decay_ids
    for p in (layer.A_log, layer.dt_bias, layer.kv_log_scale, layer.conv_weight, layer.gdn_norm,
              layer.merge_proj.bias, stack.norm.weight):
        assert id(p) not in decay_ids
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(stack.parameters()))
    assert no_decay["weight_decay"] == 0.0


def test_optimizer_steps():
    stack = HamStack(HamConfig(d_model=16, num_heads=2, head_dim=8))
    opt = make_optimizer(stack, lr=1e-2)
    before = stack.blocks[0].mixer.o_proj.weight.detach().clone()
    stack(torch.randn(2, 20, 16))[0].pow(2).mean().backward()
    opt.step()
    assert not torch.equal(before, stack.blocks[0].mixer.o_proj.weight)
