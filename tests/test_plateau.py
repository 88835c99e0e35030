"""The plateau of online SGD: the symmetric fixed point (height, index, symmetry) and the plateau's length."""
import numpy as np

from earnshaw.experiments import plateau as P


def test_symmetric_fixed_point_of_the_two_unit_committee_is_a_symmetric_saddle():
    fp = P.symmetric_fixed_point(2, 2, d=1e4)
    assert fp.grad_norm < 1e-10
    assert fp.index >= 1 and fp.lambda_min < -1e-3  # a saddle: SGD leaves it, after a while
    # every unit the same mixture of both teachers (to 1e-4: Newton stops on a flat direction of the fixed set)
    assert np.ptp(fp.overlaps) < 1e-4 and fp.overlaps.min() > 0.1
    # the plateau sits above the global minimum (0) and below the start; the ODE's plateau (lr = 0.5) above it
    assert 0.01 < fp.height < fp.ode_height < 0.2


def test_plateau_length_grows_like_log_d_and_shrinks_with_the_learning_rate():
    level = 0.015  # about half the symmetric fixed point's height
    lengths = [P.plateau_length(2, 2, d=d, t1=3000.0, level=level) for d in (1e3, 1e4, 1e5)]
    assert lengths[0] < lengths[1] < lengths[2] < np.inf
    steps = np.diff(lengths)  # equal increments per decade of d: t_escape ~ c + log(d) / rate
    assert abs(steps[1] - steps[0]) < 0.3 * steps.mean()
    fast = P.plateau_length(2, 2, d=1e4, lr=1.0, t1=3000.0, level=level)
    assert fast < lengths[1]


def test_plateau_curves_and_figure():
    curves = {f"K = M = {k}": P.plateau_curve(k, k, t1=500.0, n_save=40)[:2] for k in (2, 3)}
    for ts, eps in curves.values():
        assert eps[-1] < eps[0] and np.all(np.isfinite(eps)) and ts[0] == 0.0
    fig = P.plateau_figure(curves)
    assert fig.axes[0].get_xlabel().startswith("t = steps / d") and len(fig.axes[0].lines) == 2
