"""Matching student units to teacher units (Hungarian algorithm, scipy)."""
from __future__ import annotations

import numpy as np

__all__ = ["match_units"]


def hungarian(cost):
    """``(rows, cols)`` of a minimum-cost assignment for a cost matrix ``(n, m)``: scipy's
    ``linear_sum_assignment``, imported on first use (``scipy.optimize`` takes ~0.7 s to load, which every
    command and ``import earnshaw`` would otherwise pay).

    >>> import numpy as np
    >>> [c.tolist() for c in hungarian(np.array([[4.0, 1.0], [2.0, 8.0]]))]
    [[0, 1], [1, 0]]
    """
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)


def match_units(theta, a, w, b, *, odd=False, allowed=None):
    """Best one-to-one matching of student units to teacher units by distance.

    For odd activations ``(a, theta)`` and ``(-a, -theta)`` are the same unit, so the
    distance is ``min(|theta - w|, |theta + w|)`` and the charge is compared after the flip.

    Args:
      theta: ``(*B, k, d)``.
      a: ``(*B, k)``.
      w: ``(*B, m, d)`` or ``(m, d)``.
      b: ``(*B, m)`` or ``(m,)``.
      odd: use the sign symmetry: a bool, or one per student unit ``(k,)`` (per-unit activations).
      allowed: ``(k, m)`` bool, which student units may stand for which teacher units (per-unit activations:
        those with the same activation), or ``None`` (all).

    Returns:
      ``(teacher_index, distance, charge_error)``, each ``(*B, k)``: the teacher unit matched to
      each student unit (-1 if unmatched when ``k > m``, or matched only to a unit it may not stand for),
      the distance to it, and ``|s a_i - b_j|`` with ``s`` the sign used.

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
    odd = np.broadcast_to(np.asarray(odd, bool), (k,))
    allowed = None if allowed is None else np.asarray(allowed, bool)
    idx = np.full(batch + (k,), -1, dtype=np.int64)
    dist = np.full(batch + (k,), np.inf)
    cerr = np.full(batch + (k,), np.inf)
    for pos in np.ndindex(*batch):
        th, aa, ww, bb = theta[pos], a[pos], w[pos], b[pos]
        dplus = np.linalg.norm(th[:, None, :] - ww[None, :, :], axis=-1)
        if odd.any():
            dminus = np.linalg.norm(th[:, None, :] + ww[None, :, :], axis=-1)
            flip = odd[:, None] & (dminus < dplus)
            cost = np.where(flip, dminus, dplus)
            sign = np.where(flip, -1.0, 1.0)
        else:
            cost, sign = dplus, np.ones_like(dplus)
        cost = np.where(np.isfinite(cost), cost, 1e300)
        if allowed is not None:
            cost = np.where(allowed, cost, 1e301)
        rows, cols = hungarian(cost)
        if allowed is not None:
            keep = allowed[rows, cols]
            rows, cols = rows[keep], cols[keep]
        idx[pos][rows] = cols
        dist[pos][rows] = cost[rows, cols]
        cerr[pos][rows] = np.abs(sign[rows, cols] * aa[rows] - bb[cols])
    return idx, dist, cerr
