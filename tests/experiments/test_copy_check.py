import numpy as np
from tsham.experiments.copy_check import held_out_cycles, mase, naive


def test_seasonal_naive_copies_an_exact_cycle_and_mase_scales_by_it():
    cycle = np.array([0.0, 3.0, 1.0, -2.0, 5.0])
    past, truth = [np.tile(cycle, 20)], np.tile(cycle, 2)[None, :7]
    np.testing.assert_allclose(naive(past, 7, 5), truth)
    assert mase(past, truth, naive(past, 7, 5), 5)[0] == 0.0
    # a forecast off by 1 everywhere, against a past whose one-step seasonal error is |diff| at lag 1
    lag1 = np.abs(np.diff(past[0])).mean()
    np.testing.assert_allclose(mase(past, truth, truth + 1, 1), [1 / lag1])


def test_held_out_cycles_recover_their_period():
    past, truth, periods = held_out_cycles(6, 512, 24)
    assert truth.shape == (6, 24) and all(len(p) == 512 for p in past)
    # seasonal naive at the recovered period is far better than at a lag of one step
    assert (mase(past, truth, naive(past, 24, periods), periods) < mase(past, truth, naive(past, 24, 1), periods)).all()
