r"""Figures for ``earnshaw verify``'s README section (``docs/figures/verify_*.png``).

* :func:`nodewise_example` / ``verify_nodewise.png``: node-wise descent (Algorithm 3) on MATH.md section 5's
  example: each unit's SecondGD run, the loss against its step and the electron's path among the protons.
* :func:`lemma29_example` / ``verify_lemma29.png``: MATH.md section 6's sign-activation example on ``S^1``:
  ``P(t)`` and ``L*(t) = -P(t)^2`` with ``+-w_j`` and the local minima of ``L*`` marked.

Run ``python -m earnshaw.experiments.verify_plots [OUT_DIR]`` (float64; about half a minute on one core).
"""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher
from earnshaw.potentials import potential as _potential

__all__ = ["lemma29_example", "nodewise_example", "plot_lemma29", "plot_nodewise", "save_verify_figures"]

EXAMPLE_W = ((1.2, 0.0, 0.0), (-0.8, 0.9, 0.4))
EXAMPLE_B = (0.9, -0.6)


def nodewise_example(lr=0.01, node_steps=100_000, save_every=50, eta=1e-6, gamma=1e-6):
    """Node-wise descent on MATH.md section 5's example (ball ``eps = 0.5``, ``d = 3``, ``theta_i = 0`` starts),
    with every unit's SecondGD path.

    Unit ``i``'s sub-problem is ``L`` restricted to ``(a_i, theta_i)`` with the earlier units frozen, which is
    the single-unit loss against the teacher plus the frozen units as extra teacher units of charge ``-a_j``
    (``(a_i s_i - (sum_j b_j s_j - sum_{j<i} a_j s_j))^2``): so each node is a :func:`second_gd` run with a
    saved path. The end point is checked against :func:`nodewise_descent` (to 1e-8).

    Returns:
      dict with ``w``, ``b``, ``nodes`` (per unit: ``steps``, ``loss`` (full ``L``), ``theta`` path, ``a``,
      ``status``), ``loss_start`` and ``nodewise`` (the :func:`nodewise_descent` trajectory).
    """
    from earnshaw.dynamics.descent import second_gd
    from earnshaw.dynamics.nodewise import nodewise_descent
    from earnshaw.loss import optimal_a

    pot = _potential("almost_harmonic", d=3, eps=0.5, lam=1.0)
    w, b = jnp.asarray(EXAMPLE_W), jnp.asarray(EXAMPLE_B)
    teacher = Teacher(b=b, w=w)
    ref = nodewise_descent(None, pot, teacher, k=2, lr=lr, max_steps=node_steps, eta=eta, gamma=gamma,
                           init_theta="zero", resolve_a=True)
    frozen_w, frozen_a = [], []
    nodes = []
    for _ in range(2):
        tw = jnp.concatenate([w, jnp.asarray(frozen_w).reshape(-1, 3)])
        tb = jnp.concatenate([b, -jnp.asarray(frozen_a).reshape(-1)])
        sub = Teacher(b=tb, w=tw)
        th0 = jnp.zeros((1, 3))
        start = Student(a=optimal_a(pot, sub, th0), theta=th0)
        tr = second_gd(pot, sub, start, lr=lr, max_steps=node_steps, eta=eta, gamma=gamma, save_every=save_every)
        keep = np.asarray(tr.saved)
        nodes.append(dict(steps=np.asarray(tr.ts)[keep], loss=np.asarray(tr.losses)[keep],
                          theta=np.asarray(tr.params.theta[:, 0])[keep], a=np.asarray(tr.params.a[:, 0])[keep],
                          status=str(tr.status_names()), n_steps=int(tr.n_steps)))
        frozen_w.append(np.asarray(tr.final.theta[0]))
        frozen_a.append(float(tr.final.a[0]))
    learned = np.asarray(frozen_w)
    if not np.allclose(learned, np.asarray(ref.final.theta), atol=1e-8):
        raise RuntimeError(f"per-node SecondGD runs {learned} differ from nodewise_descent {ref.final.theta}")
    return dict(w=np.asarray(w), b=np.asarray(b), nodes=nodes, loss_start=float(ref.losses[0]), nodewise=ref)


def plot_nodewise(data, path=None):
    """Two panels: the loss ``L`` against each node's SecondGD step, and the electron paths projected on the
    plane through 0 and both protons."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, b, nodes = data["w"], data["b"], data["nodes"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.3))
    colors = ("tab:blue", "tab:orange")
    for i, nd in enumerate(nodes):
        ax0.semilogy(nd["steps"], nd["loss"], color=colors[i],
                     label=f"node {i + 1} ({nd['status']} after {nd['n_steps']} steps)")
    ref = data["nodewise"]
    ax0.axhline(float(ref.final_loss), color="k", ls=":", lw=1,
                label=f"after re-solving a: L = {float(ref.final_loss):.1e}")
    ax0.text(0.03, 0.66, "each plateau: the electron creeps away from θ = 0, where the pull is\n"
             "proportional to its small optimal charge P(0); then it falls onto a proton",
             transform=ax0.transAxes, fontsize=7.5, color="0.3")
    ax0.set_xlabel("SecondGD step (per node)")
    ax0.set_ylabel("loss L (eq. 1)")
    ax0.set_title("node-wise descent (Algorithm 3), MATH.md §5 example")
    ax0.legend(fontsize=8)
    # orthonormal basis of the plane spanned by w_1, w_2 (it contains the start theta = 0)
    e1 = w[0] / np.linalg.norm(w[0])
    e2 = w[1] - (w[1] @ e1) * e1
    e2 /= np.linalg.norm(e2)
    proj = lambda x: np.stack([x @ e1, x @ e2], -1)  # noqa: E731
    pw = proj(w)
    for j in range(len(b)):
        ax1.scatter(*pw[j], s=260 * abs(b[j]), marker="o", facecolor="none", edgecolor="crimson", lw=2, zorder=3)
        ax1.annotate(f"proton w{j + 1}, b={b[j]:+.1f}", pw[j], textcoords="offset points", xytext=(-30, -22),
                     fontsize=8, color="crimson")
    for i, nd in enumerate(nodes):
        p = proj(nd["theta"])
        ax1.plot(p[:, 0], p[:, 1], "-", color=colors[i], lw=1.5, label=f"electron {i + 1}, a → {nd['a'][-1]:+.3f}")
        ax1.scatter(*p[-1], color=colors[i], marker="x", s=50, zorder=4)
    ax1.scatter(0, 0, color="k", marker="+", s=80, zorder=4)
    ax1.annotate("start θ = 0", (0, 0), textcoords="offset points", xytext=(6, -14), fontsize=8)
    ax1.set_aspect("equal")
    ax1.set_xlabel("along w₁")
    ax1.set_ylabel("in the (w₁, w₂) plane, orthogonal to w₁")
    ax1.set_title("electron paths (projected on the protons' plane)")
    ax1.set_xlim(pw[:, 0].min() - 0.3, pw[:, 0].max() + 0.3)
    ax1.set_ylim(min(pw[:, 1].min(), 0.0) - 0.35, max(pw[:, 1].max(), 0.0) + 0.3)
    ax1.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def lemma29_example(grid=4096):
    """MATH.md section 6's sign-activation example on ``S^1``: ``s = (0.3, 1.9, 4.0)``, ``b = (0.8, -0.5, 0.35)``.

    Returns:
      dict with the angles ``t``, ``P(t)``, ``L*(t) = -P(t)^2``, ``s``, ``b`` and ``minima`` (the strict local
      minima of ``L*`` on the grid; MATH.md: only ``1.9`` and ``1.9 + pi``, ``L* = -0.400422``).
    """
    pot = _potential("sign")
    s = np.array([0.3, 1.9, 4.0])
    b = np.array([0.8, -0.5, 0.35])
    t = np.linspace(0.0, 2 * np.pi, grid, endpoint=False)
    circ = lambda x: jnp.stack([jnp.cos(x), jnp.sin(x)], -1)  # noqa: E731
    P = np.asarray(pot(circ(jnp.asarray(t))[:, None, :], circ(jnp.asarray(s))[None]) @ jnp.asarray(b))
    L = -P**2
    strict = (L < np.roll(L, 1) - 1e-12) & (L < np.roll(L, -1) - 1e-12)
    return dict(t=t, P=P, L=L, s=s, b=b, minima=t[strict], minima_L=L[strict])


def plot_lemma29(data, path=None):
    """``P(t)`` and ``L*(t)`` on the circle with ``+-w_j`` (dashed/dotted) and the local minima of ``L*``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, P, L, s = data["t"], data["P"], data["L"], data["s"]
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(t, P, color="tab:gray", lw=1.2, label="P(t) = Σⱼ bⱼ Φ(t, sⱼ)")
    ax.plot(t, L, color="tab:blue", lw=2, label="L*(t) = −P(t)²  (a optimal)")
    for j, sj in enumerate(s):
        lab = dict(label="+wⱼ (kinks of P)") if j == 0 else {}
        ax.axvline(sj, color="crimson", ls="--", lw=1, **lab)
        lab = dict(label="−wⱼ") if j == 0 else {}
        ax.axvline((sj + np.pi) % (2 * np.pi), color="crimson", ls=":", lw=1, **lab)
        ax.annotate(f"w{j + 1}", (sj, 0.95), xycoords=("data", "axes fraction"),
                    xytext=(3, 0), textcoords="offset points", fontsize=8, color="crimson")
    ax.scatter(data["minima"], data["minima_L"], color="k", zorder=4, s=40,
               label="local minima of L*:\n" + ", ".join(f"t={m:.2f}" for m in data["minima"])
               + f" (L* = {data['minima_L'].min():.4f})")
    ax.set_xlim(0, 2 * np.pi)
    ax.set_xlabel("angle t of the electron on S¹")
    ax.set_title("Lemma 29, sign activation on S¹: the minima of L* sit at ±wⱼ (MATH.md §6 example)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def save_verify_figures(out_dir="docs/figures"):
    """Compute and save ``verify_nodewise.png`` and ``verify_lemma29.png`` in ``out_dir``; returns the paths."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("the verify figures need float64: jax.config.update('jax_enable_x64', True)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "verify_nodewise.png", out / "verify_lemma29.png"]
    plot_nodewise(nodewise_example(), paths[0])
    plot_lemma29(lemma29_example(), paths[1])
    return paths


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    for p in save_verify_figures(*sys.argv[1:2]):
        print(p)
