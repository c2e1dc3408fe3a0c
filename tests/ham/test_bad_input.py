"""Bad input raises a ValueError that names the problem."""

import math

import pytest
import torch

from tsham.ham import HamConfig, HamLayer, HamStack, build_router


def layer(router="surprise", **kwargs):
    return HamLayer(HamConfig(d_model=16, num_heads=2, head_dim=8, router=router, router_kwargs=kwargs))


def test_wrong_shape():
    with pytest.raises(ValueError, match=r"x must be \[B, T, D=16\]"):
        layer()(torch.randn(2, 10, 15))
    with pytest.raises(ValueError, match=r"x must be \[B, T, D=16\]"):
        HamStack(HamConfig(d_model=16, num_heads=2, head_dim=8))(torch.randn(10, 16))


def test_nan_and_inf():
    x = torch.randn(2, 10, 16)
    x[1, 3, 4] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        layer()(x)
    x[1, 3, 4] = math.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        layer().step(x[:, 3], layer().init_state(2))


def test_flags_of_wrong_length():
    with pytest.raises(ValueError, match="flags must be"):
        layer("event")(torch.randn(2, 10, 16), flags=torch.ones(2, 9, 1))
    with pytest.raises(ValueError, match="needs event flags"):
        layer("event")(torch.randn(2, 10, 16))


def test_oracle_mask():
    with pytest.raises(ValueError, match="needs oracle_mask"):
        layer("oracle")(torch.randn(2, 10, 16))
    with pytest.raises(ValueError, match="oracle_mask must be"):
        layer("oracle")(torch.randn(2, 10, 16), oracle_mask=torch.ones(2, 11, dtype=torch.bool))


def test_unknown_router_and_arguments():
    with pytest.raises(ValueError, match="unknown router 'surprize'; known routers: .*surprise"):
        layer("surprize")
    with pytest.raises(ValueError, match="router 'surprise'"):
        build_router("surprise", 16, 0, 2, treshold=0.1)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        layer(aggregate="median")
    with pytest.raises(ValueError, match="warmup must be a number of tokens"):
        layer(warmup=-1)
    with pytest.raises(ValueError, match="target fraction must lie in"):
        layer(target=1.5)
    with pytest.raises(ValueError, match="target fraction cannot be set"):
        layer("event", target=0.1)
    with pytest.raises(ValueError, match="cap must be"):
        layer(cap=0)
    with pytest.raises(ValueError, match="at least one child"):
        layer("composite")
    with pytest.raises(ValueError, match="give window=N"):  # was an internal "multiple values for 'cap'"
        build_router("recency", 16, 0, 2, cap=8)
