import time

import numpy as np
import pytest
from tsham.datasets import GENERATORS, synthetic_mix

from tsham.patch import ChannelRole


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_shapes_and_determinism(name):
    a = GENERATORS[name](300, np.random.default_rng(7))
    b = GENERATORS[name](300, np.random.default_rng(7))
    assert a.values.shape[0] == 300 and a.values.dtype == np.float32 and np.isfinite(a.values).all()
    assert a.flags.shape[0] == 300 and len(a.roles) == a.values.shape[1]
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.std() > 0


def test_delayed_action_effect_comes_after_the_action():
    s = GENERATORS["delayed_actions"](400, np.random.default_rng(1))
    assert s.roles == [ChannelRole.TARGET, ChannelRole.PAST_COVARIATE]
    np.testing.assert_array_equal(s.flags[:, 0], (s.values[:, 1] != 0).astype(np.float32))


def test_mix_is_seeded_fast_and_checks_names():
    start = time.perf_counter()
    mix = synthetic_mix(20, 1024, seed=3)
    assert time.perf_counter() - start < 10
    again = synthetic_mix(20, 1024, seed=3)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(mix, again, strict=True))
    with pytest.raises(ValueError, match="unknown generators"):
        synthetic_mix(2, 10, weights={"sines": 1.0})
