"""Patch encoder: shapes, masks, any channel count, roles and channel identity matter."""

import pytest
import torch

from tsham.patch import ChannelRole, PatchConfig, PatchEncoder, patchify


def test_patchify_left_pads_and_keeps_the_last_step_last():
    x = torch.arange(10.0).view(1, 10, 1)
    p = patchify(x, patch_length=4, stride=4)  # 3 patches, 2 padded steps in front
    assert p.shape == (1, 3, 1, 4)
    assert p[0, 0, 0].tolist() == [0, 0, 0, 1] and p[0, -1, 0].tolist() == [6, 7, 8, 9]
    assert patchify(x, 4, 2).shape == (1, 4, 1, 4)


@pytest.mark.parametrize("channels", [1, 3, 7])
def test_any_channel_count_with_the_same_weights(channels):
    enc = PatchEncoder(PatchConfig(patch_length=8, stride=8, d_model=32))
    x = torch.randn(2, 40, channels)
    tokens, mask = enc(x, torch.ones_like(x, dtype=torch.bool))
    assert tokens.shape == (2, 5, 32) and mask.shape == (2, 5) and mask.all()


def test_channel_independent_mode():
    enc = PatchEncoder(PatchConfig(patch_length=8, stride=8, d_model=32, channel_independent=True))
    x = torch.randn(2, 40, 3)
    tokens, mask = enc(x, torch.ones_like(x, dtype=torch.bool))
    assert tokens.shape == (6, 5, 32) and mask.shape == (6, 5)


def test_unobserved_patches_are_masked_and_missing_values_ignored():
    enc = PatchEncoder(PatchConfig(patch_length=4, stride=4, d_model=16))
    x = torch.randn(1, 12, 2)
    observed = torch.ones_like(x, dtype=torch.bool)
    observed[:, :4] = False  # the first patch is all missing
    tokens, mask = enc(x, observed)
    assert mask.tolist() == [[False, True, True]]
    x2 = x.clone()
    x2[:, :4] = 1e6  # values at missing positions must not matter
    torch.testing.assert_close(enc(x2, observed)[0], tokens)


def test_roles_and_channel_identity_change_the_tokens():
    enc = PatchEncoder(PatchConfig(patch_length=4, stride=4, d_model=16))
    x = torch.randn(1, 8, 2)
    obs = torch.ones_like(x, dtype=torch.bool)
    base, _ = enc(x, obs)
    roles = torch.tensor([ChannelRole.TARGET, ChannelRole.EVENT_FLAG])
    assert not torch.allclose(enc(x, obs, roles)[0], base)
    swapped, _ = enc(x.flip(-1), obs)  # the same values in the other channel give another token: binding
    assert not torch.allclose(swapped, base)


def test_bad_input():
    enc = PatchEncoder(PatchConfig(patch_length=4, stride=4, d_model=16))
    with pytest.raises(ValueError, match=r"\[B, T, C\]"):
        enc(torch.randn(8, 2), torch.ones(8, 2))
    with pytest.raises(ValueError, match="roles must be"):
        enc(torch.randn(1, 8, 2), torch.ones(1, 8, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="stride"):
        PatchConfig(patch_length=4, stride=8)


def test_bind_channels_gives_each_channel_its_own_linear_direction():
    # with the GELU mean switched off, the bound term alone is linear in a patch's values, one independent
    # direction per channel: what lets a token hold a multichannel key exactly
    torch.manual_seed(0)
    enc = PatchEncoder(PatchConfig(patch_length=1, stride=1, d_model=32, bind_channels=True))
    torch.nn.init.zeros_(enc.out_proj.weight), torch.nn.init.zeros_(enc.out_proj.bias)
    C = 6
    x, y = torch.randn(1, 1, C), torch.randn(1, 1, C)
    observed = torch.ones(1, 1, C)

    def token(v):
        return enc(v, observed)[0][0, 0]

    assert torch.allclose(token(2 * x - y) - token(torch.zeros(1, 1, C)),
                          2 * (token(x) - token(torch.zeros(1, 1, C))) - (token(y) - token(torch.zeros(1, 1, C))),
                          atol=1e-5)
    jacobian = torch.autograd.functional.jacobian(lambda v: token(v.view(1, 1, C)), torch.zeros(C))
    assert torch.linalg.matrix_rank(jacobian) == C


def test_bind_channels_is_off_by_default_so_older_checkpoints_load():
    base = PatchEncoder(PatchConfig(patch_length=4, stride=4, d_model=16))
    bound = PatchEncoder(PatchConfig(patch_length=4, stride=4, d_model=16, bind_channels=True))
    assert not any("bind" in k for k in base.state_dict())
    assert set(bound.state_dict()) - set(base.state_dict()) == {"bind_proj.weight"}
    with pytest.raises(ValueError, match="channel_independent"):
        PatchConfig(bind_channels=True, channel_independent=True)
