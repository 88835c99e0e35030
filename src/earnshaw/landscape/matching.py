"""Matching student units to teacher units (Hungarian algorithm, scipy)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["match_units"]


def match_units(theta, a, w, b, *, odd: bool = False):
    """Best one-to-one matching of student units to teacher units by distance.

    For odd activations ``(a, theta)`` and ``(-a, -theta)`` are the same unit, so the
    distance is ``min(|theta - w|, |theta + w|)`` and the charge is compared after the flip.

    Args:
      theta: ``(*B, k, d)``.
      a: ``(*B, k)``.
      w: ``(*B, m, d)`` or ``(m, d)``.
      b: ``(*B, m)`` or ``(m,)``.
      odd: use the sign symmetry.

    Returns:
      ``(teacher_index, distance, charge_error)``, each ``(*B, k)``: the teacher unit matched to
      each student unit (-1 if unmatched when ``k > m``), the distance to it, and
      ``|s a_i - b_j|`` with ``s`` the sign used.

    >>> import numpy as np
    >>> idx, dist, _ = match_units(np.array([[0., 1.], [1., 0.]]), np.ones(2), np.eye(2), np.ones(2))
    >>> idx.tolist(), dist.tolist()
    ([1, 0], [0.0, 0.0])
    """
    theta, a = np.asarray(theta, float), np.asarray(a, float)
    batch = theta.shape[:-2]
    w = np.broadcast_to(np.asarray(w, float), batch + np.shape(w)[-2:])
    b = np.broadcast_to(np.asarray(b, float), batch + np.shape(b)[-1:])
    k = theta.shape[-2]
    idx = np.full(batch + (k,), -1, dtype=np.int64)
    dist = np.full(batch + (k,), np.inf)
    cerr = np.full(batch + (k,), np.inf)
    for pos in np.ndindex(*batch):
        th, aa, ww, bb = theta[pos], a[pos], w[pos], b[pos]
        dplus = np.linalg.norm(th[:, None, :] - ww[None, :, :], axis=-1)
        if odd:
            dminus = np.linalg.norm(th[:, None, :] + ww[None, :, :], axis=-1)
            cost = np.minimum(dplus, dminus)
            sign = np.where(dminus < dplus, -1.0, 1.0)
        else:
            cost, sign = dplus, np.ones_like(dplus)
        cost = np.where(np.isfinite(cost), cost, 1e300)
        rows, cols = linear_sum_assignment(cost)
        idx[pos][rows] = cols
        dist[pos][rows] = cost[rows, cols]
        cerr[pos][rows] = np.abs(sign[rows, cols] * aa[rows] - bb[cols])
    return idx, dist, cerr
