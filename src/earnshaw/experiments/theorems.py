r"""Numerical checks of the paper's theorems, each over many seeds (``earnshaw verify``).

Every ``check_*`` function runs one claim of the paper (as corrected in MATH.md) over
many random problems in batched solver calls, and returns a *row*::

    {"check", "activation", "potential", "claim", "run", "seeds", "success", "worst",
     "verdict", "details"}

``success`` is the fraction of seeds (problems) on which the claim held, ``worst`` the
worst measured case (a number with its meaning), and ``verdict`` is ``"PASS"`` when the
claim held on every seed (or on the required fraction, for "with high probability"
claims). ``details`` holds the raw per-seed numbers. Each check takes ``seeds`` and
``quick`` and keyword arguments that can make it test a *wrong* claim (the paper's
uncorrected factor in Theorem 5, a non-harmonic potential for Earnshaw, ``l = 2`` for
Theorem 30, ...), so the tests can show every check is able to fail.

Conventions: natural sign (the student predicts ``+sum a_i sigma(x, theta_i)``, so
``a = b`` at the optimum; the paper's ``a = -b``). Everything runs in float64; the
caller enables it (the CLI does, and :func:`verify` checks).
"""
from __future__ import annotations

import functools
import math
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher
from earnshaw.dynamics.forces import electron_velocity
from earnshaw.loss import objective as _objective, optimal_a
from earnshaw.potentials import potential as _potential
from earnshaw.problem import Problem

__all__ = ["check_theorem5", "check_earnshaw", "check_theorem11", "check_theorem12", "check_theorem17",
           "check_lemma29", "check_lemma31", "check_theorem30", "CHECKS", "verify", "table_rows"]

ROW_KEYS = ("check", "activation", "potential", "claim", "run", "seeds", "success", "worst", "verdict")


def _require_x64():
    if not jax.config.jax_enable_x64:
        raise RuntimeError("the theorem checks need float64: jax.config.update('jax_enable_x64', True)")


def _row(check, activation, potential, claim, run, ok, worst, *, min_rate=1.0, details=None, seconds=None):
    ok = np.asarray(ok, bool).reshape(-1)
    rate = float(ok.mean()) if ok.size else 0.0
    row = dict(check=check, activation=activation, potential=potential, claim=claim, run=run, seeds=int(ok.size),
               success=rate, worst=worst, verdict="PASS" if ok.size and rate >= min_rate else "FAIL")
    row["details"] = dict(details or {})
    if seconds is not None:
        row["details"]["seconds"] = seconds
    return row


def _keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)


# --------------------------------------------------------------------------------------------------------------
# Theorem 5 (corrected): gradient flow on L is electron-proton dynamics under 2 Phi (+ self-energy)
# --------------------------------------------------------------------------------------------------------------

THEOREM5_POTENTIALS = (("erf", {}), ("relu", {}), ("tanh", {}), ("gaussian", {}), ("yukawa", {"d": 3}),
                       ("almost_harmonic", {"d": 3, "eps": 0.5}))


def check_theorem5(seeds=200, quick=False, *, potentials=THEOREM5_POTENTIALS, loss_scale=1.0,
                   include_self=True, d=3, k=3, tol=1e-10, seed=0):
    r"""Theorem 5, corrected: ``-grad_theta (loss_scale * L) == electron_velocity`` (forces under ``2 Phi``).

    For each potential, ``seeds`` random (teacher, student) pairs; the residual is
    ``max|-grad - v| / max|v|`` per problem. The corrected statement is ``loss_scale = 1``
    with the self-energy of inner-product potentials; the paper's "flow on L/2 <-> 2 Phi"
    is ``loss_scale = 0.5`` and must fail, as must ``include_self=False`` for erf/relu/tanh.
    """
    _require_x64()
    t0 = time.perf_counter()
    worst, oks, per = 0.0, [], {}
    names = []
    for n, (name, params) in enumerate(potentials):
        pot = _potential(name, **params)
        names.append(name)
        kt, ks = jax.random.split(jax.random.key(seed + 1000 * n))
        teacher = _random_teacher(kt, d, k, seeds)
        student = _random_student(ks, d, k, seeds)
        res = np.asarray(_theorem5_fn(pot, float(loss_scale), bool(include_self))(student, teacher))
        per[name] = float(res.max())
        worst = max(worst, float(res.max()))
        oks.append(res < tol)
    claim = ("flow on L = e-p dynamics under 2Φ (+ self-energy)" if loss_scale == 1.0
             else f"flow on {loss_scale:g}·L = e-p dynamics under 2Φ")
    if not include_self:
        claim += ", no self-energy"
    return _row("Theorem 5", "/".join(names), "Φ of each", claim,
                f"autodiff ∇θ vs pair forces, d={d}, k={k}, {len(potentials)} potentials",
                np.concatenate(oks), f"rel. residual {worst:.1e}", details=dict(per_potential=per, tol=tol),
                seconds=time.perf_counter() - t0)


@functools.lru_cache(maxsize=None)
def _theorem5_fn(pot, loss_scale, include_self):
    loss = _objective("L" if pot.bounded else "reduced")

    def single(student, teacher):
        g = jax.grad(lambda th: loss_scale * loss(pot, teacher, Student(a=student.a, theta=th)))(student.theta)
        v = electron_velocity(pot, teacher, student, include_self=include_self)
        return jnp.max(jnp.abs(-g - v)) / jnp.max(jnp.abs(v))

    return jax.jit(jax.vmap(single))


def _random_teacher(key, d, k, n, scale=1.0):
    kw, kb = jax.random.split(key)
    return Teacher(b=jax.random.normal(kb, (n, k)), w=scale * jax.random.normal(kw, (n, k, d)))


def _random_student(key, d, k, n, scale=1.0):
    kt, ka = jax.random.split(key)
    return Student(a=jax.random.normal(ka, (n, k)), theta=scale * jax.random.normal(kt, (n, k, d)))


# --------------------------------------------------------------------------------------------------------------
# Theorem 9 (Earnshaw): harmonic Phi, reduced loss (eq. 2) -> zero per-electron Laplacian, flows collide
# --------------------------------------------------------------------------------------------------------------


def check_earnshaw(seeds=200, quick=False, *, potential=("coulomb", {"d": 3}), d=3, k=3, tol=1e-8,
                   collision_radius=1e-2, t1=1e4, flow_seeds=None, seed=1):
    r"""Earnshaw (Theorem 9): with a harmonic potential and the reduced loss (eq. 2, charges fixed),
    every electron's Laplacian (trace of its ``theta_i`` Hessian block) is zero at random
    configurations, so a nonzero block has a negative eigenvalue and there is no strict local
    minimum; and gradient flows (attracting charges: ``a, b > 0``) end with an electron on a proton
    (status ``collided``, nearest proton within ``collision_radius``).

    Per seed the claim holds when ``max_i |Delta_i| / |H_ii|_F < tol``, every nonzero block has
    ``lambda_min < 0``, and (for the first ``flow_seeds`` seeds) the flow collided into a proton.
    A non-harmonic ``potential`` (``("gaussian", {})``) fails.
    """
    _require_x64()
    t0 = time.perf_counter()
    name, params = potential
    pot = _potential(name, **params)
    kt, ks = jax.random.split(jax.random.key(seed))
    teacher = _random_teacher(kt, d, k, seeds)
    student = _random_student(ks, d, k, seeds)
    lap_rel, lam_min = (np.asarray(x) for x in _earnshaw_hess_fn(pot, k, d)(student, teacher))
    ok_lap = lap_rel.max(-1) < tol
    ok_neg = np.all(lam_min < 0, axis=-1)
    # flows: positive charges, so every electron is pulled in by the protons and pushed by the others
    nf = seeds if flow_seeds is None else min(seeds, flow_seeds)
    kt2, ks2, ka, kb = jax.random.split(jax.random.key(seed + 1), 4)
    ft = Teacher(b=jax.random.uniform(kb, (nf, k), minval=0.5, maxval=1.5), w=jax.random.normal(kt2, (nf, k, d)))
    fs = Student(a=jax.random.uniform(ka, (nf, k), minval=0.5, maxval=1.5),
                 theta=2.0 * jax.random.normal(ks2, (nf, k, d)))
    from earnshaw.dynamics.flow import gradient_flow

    traj = gradient_flow(pot, ft, fs, t1=t1, train="theta", objective="reduced", collision_radius=collision_radius,
                         n_save=2, gtol=0.0, on_divergence="ignore")
    status = traj.status_names()
    d_ep = np.asarray(jnp.linalg.norm(traj.final.theta[:, :, None] - ft.w[:, None], axis=-1).min(axis=(-2, -1)))
    ok_flow = (status == "collided") & (d_ep < collision_radius * 1.5)
    ok = ok_lap & ok_neg
    ok[:nf] &= ok_flow
    worst = f"|Δθ|/|H| {lap_rel.max():.1e}; {int((~ok_flow).sum())}/{nf} flows not on a proton"
    return _row("Theorem 9 (Earnshaw)", "— (not realisable)", _pot_label(pot),
                "Δθᵢ L = 0 ⇒ no strict min; flows end on a proton",
                f"Hessian at random configs; flow (θ only, a,b>0) to collision, d={d}, k={k}", ok, worst,
                details=dict(laplacian_rel_max=float(lap_rel.max()), all_blocks_negative=bool(ok_neg.all()),
                             flow_status={s: int((status == s).sum()) for s in set(status.tolist())}),
                seconds=time.perf_counter() - t0)


def _pot_label(pot):
    args = ", ".join(f"{k}={v}" for k, v in pot.params if k != "order")
    return f"{pot.name}({args})" if args else pot.name


def _circle_label(name, pot):
    """The potential's label in the S^1 checks: the sign activation's closed form on the circle."""
    return "1 − 2·angle/π on S¹" if name == "sign" else _pot_label(pot)


@functools.lru_cache(maxsize=None)
def _earnshaw_hess_fn(pot, k, d):
    def single(student, teacher):
        problem = Problem(pot, teacher, objective="reduced")
        H = jax.hessian(problem.f)(problem.flatten(student))
        blocks = jnp.stack([H[k + i * d:k + (i + 1) * d, k + i * d:k + (i + 1) * d] for i in range(k)])
        lap = jnp.trace(blocks, axis1=-2, axis2=-1)
        scale = jnp.linalg.norm(blocks, axis=(-2, -1))
        return jnp.abs(lap) / scale, jnp.linalg.eigvalsh(blocks)[:, 0]

    return jax.jit(jax.vmap(single))


# --------------------------------------------------------------------------------------------------------------
# Theorem 11: lambda-harmonic Phi -> Laplacian identities; local minima have an electron on a proton or no charge
# --------------------------------------------------------------------------------------------------------------

AH_EPS = 0.5


def _separated(key, d, k, n, min_sep, scale=2.0):
    """``n`` (teacher, student) configurations whose charges are all at least ``min_sep`` apart."""
    tries = 4 * n + 16
    kt, ks = jax.random.split(key)
    t = _random_teacher(kt, d, k, tries, scale)
    s = _random_student(ks, d, k, tries, scale)
    pts = np.asarray(jnp.concatenate([s.theta, t.w], axis=1))
    dist = np.linalg.norm(pts[:, :, None] - pts[:, None], axis=-1) + np.eye(2 * k) * 1e9
    idx = np.flatnonzero(dist.min(axis=(-2, -1)) >= min_sep)[:n]
    if idx.size < n:
        raise RuntimeError("could not sample enough separated configurations")
    take = lambda x: x[idx]  # noqa: E731
    return jax.tree_util.tree_map(take, t), jax.tree_util.tree_map(take, s)


@functools.lru_cache(maxsize=None)
def _laplacian_fn(pot, k, d, objective, reg):
    """Per-electron Laplacian and the lambda-harmonic prediction of MATH.md section 4.

    ``reg=None``: charges as given (identity ``Delta_i = 2 lam a_i [sum_{j!=i} a_j K_ij - sum_j b_j B_ij]``);
    ``reg=0`` / ``1``: ``a`` optimal for L / G, where the prediction is ``-2 lam (1 + reg) a_i^2``.
    """
    lam = 1.0 if pot.lam is None else pot.lam

    def single(student, teacher):
        if reg is not None:
            student = Student(a=optimal_a(pot, teacher, student.theta, reg=reg), theta=student.theta)
        problem = Problem(pot, teacher, objective=objective)
        H = jax.hessian(problem.f)(problem.flatten(student))
        lap = jnp.stack([jnp.trace(H[k + i * d:k + (i + 1) * d, k + i * d:k + (i + 1) * d]) for i in range(k)])
        a = student.a
        if reg is None:
            K = pot.self_gram(student.theta)
            B = pot.gram(student.theta, teacher.w)
            inter = jnp.where(jnp.eye(k, dtype=bool), 0.0, K) @ a - B @ teacher.b
            pred = 2.0 * lam * a * inter
        else:
            pred = -2.0 * lam * (1.0 + reg) * a**2
        return jnp.max(jnp.abs(lap - pred)) / jnp.max(jnp.abs(pred))

    return jax.jit(jax.vmap(single))


def _cluster_example(pot):
    """MATH.md section 4's co-located cluster: Laplacian of ``H(v) = L(theta_S + v)`` vs the formula."""
    vals = np.asarray(_cluster_fn(pot)())
    return {"L": (float(vals[0, 0]), float(vals[0, 1])), "G": (float(vals[1, 0]), float(vals[1, 1]))}


@functools.lru_cache(maxsize=None)
def _cluster_fn(pot):
    lam = 1.0 if pot.lam is None else pot.lam

    @jax.jit
    def run():
        theta = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.6, 0.0, 0.0]])
        teacher = Teacher(b=jnp.array([0.8, -0.5]), w=jnp.array([[0.0, 0.5, 0.0], [0.2, -0.4, 0.45]]))
        out = []
        for name, reg in (("L", 0.0), ("G", 1.0)):
            a = optimal_a(pot, teacher, theta, reg=reg)
            f = _objective(name)
            H = jax.hessian(lambda v: f(pot, teacher, Student(a=a, theta=theta.at[:2].add(v))))(jnp.zeros(3))
            pred = -2.0 * lam * ((a[0] + a[1]) ** 2 + reg * (a[0] ** 2 + a[1] ** 2))
            out.append(jnp.stack([jnp.trace(H), pred]))
        return jnp.stack(out)

    return run


def check_theorem11(seeds=200, quick=False, *, potential=("almost_harmonic", {"d": 3, "eps": AH_EPS}),
                    yukawa=("yukawa", {"d": 3}), d=3, k=2, tol=1e-6, steps=20_000, charge_tol=0.05, gtol=1e-6, seed=2):
    r"""Theorem 11 (lambda-harmonic ``Phi``, loss eq. 1), three ways:

    1. the Laplacian identity ``Delta_{theta_i} L = 2 lam a_i [sum_{j!=i} a_j Phi_ij - sum_j b_j Phi(theta_i, w_j)]``
       with fixed charges at random configurations (``yukawa``, reduced loss: exact for ``r > 0``);
    2. at optimal ``a`` and separated charges (all distances >= eps), ``Delta_i = -2 lam a_i^2`` (L) and
       ``-4 lam a_i^2`` (G): never positive, so no local minimum away from the protons unless ``a_i = 0``
       (and MATH.md section 4's co-located cluster ``-2 lam (a_1 + a_2)^2``);
    3. GD + Newton from random starts (``potential``, almost lambda-harmonic): at every end point that
       Newton makes stationary (gradient norm <= ``gtol``; the others are not critical points and only
       counted) every electron sits within ``eps`` of a proton, or within ``eps`` of another electron with the
       cluster's total charge below ``charge_tol``, or carries ``|a_i| < charge_tol`` (so
       ``L(a, theta) ~ L(0, theta)``).

    A potential that is not lambda-harmonic (``("gaussian", {})``) fails parts 1-2.
    """
    _require_x64()
    t0 = time.perf_counter()
    pot = _potential(potential[0], **potential[1])
    yuk = _potential(yukawa[0], **yukawa[1])
    eps = float(dict(pot.params).get("eps", AH_EPS))
    key = jax.random.key(seed)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    # 1. identity with fixed charges
    t1_, s1_ = _separated(k1, d, 3, seeds, 0.05)
    r1 = np.asarray(_laplacian_fn(yuk, 3, d, "reduced" if not yuk.bounded else "L", None)(s1_, t1_))
    # 2. optimal a, separated configuration (lambda-harmonic region)
    t2_, s2_ = _separated(k2, d, 3, seeds, eps)
    r2L = np.asarray(_laplacian_fn(pot, 3, d, "L", 0.0)(s2_, t2_))
    r2G = np.asarray(_laplacian_fn(pot, 3, d, "G", 1.0)(s2_, t2_))
    cluster = _cluster_example(pot)
    ok_cluster = all(abs(v - p) <= tol * abs(p) for v, p in cluster.values())
    # 3. end points of descent + Newton
    from earnshaw.dynamics.descent import gradient_descent
    from earnshaw.landscape.critical import refine

    n3 = seeds
    t3 = _random_teacher(k3, d, k, n3)
    s3 = _random_student(k4, d, k, n3)
    traj = gradient_descent(pot, t3, s3, lr=0.01, max_steps=steps // (4 if quick else 1), save_every=steps, gtol=1e-10,
                            on_divergence="ignore")
    pol, gn = refine(pot, t3, traj.final)
    stationary = np.asarray(gn) <= gtol
    th, a = np.asarray(pol.theta), np.asarray(pol.a)
    w = np.asarray(t3.w)
    d_ep = np.linalg.norm(th[:, :, None] - w[:, None], axis=-1).min(-1)
    d_ee = np.linalg.norm(th[:, :, None] - th[:, None], axis=-1)
    near = d_ee < eps
    cluster_charge = np.abs(np.einsum("nij,nj->ni", near, a))
    on_proton = d_ep < eps
    dead = np.minimum(np.abs(a), cluster_charge) < charge_tol
    ok3 = np.all(on_proton | dead, axis=-1) | ~stationary  # the claim is about critical points
    off = ~on_proton & stationary[:, None]
    worst_a = float(np.max(np.where(off, np.minimum(np.abs(a), cluster_charge), 0.0)))
    ok = (r1 < tol) & (r2L < tol) & (r2G < tol) & ok3 & ok_cluster
    worst = f"Δ rel. err {max(r1.max(), r2L.max(), r2G.max()):.1e}; off-proton |a| ≤ {worst_a:.1e}"
    return _row("Theorem 11", "σ_ε (Lemma 13)", f"{_pot_label(yuk)}; {_pot_label(pot)}",
                "Δθ = 2λ·interaction = −2λa² at a*; minima: e⁻ on p⁺ or charge 0",
                f"Hessian traces at random configs; GD {steps // (4 if quick else 1)} steps + Newton "
                f"({int(stationary.sum())}/{n3} stationary), d={d}, k={k}",
                ok, worst,
                details=dict(identity_rel=float(r1.max()), optimal_L_rel=float(r2L.max()),
                             optimal_G_rel=float(r2G.max()), cluster_example=cluster,
                             endpoints_on_proton=float(on_proton.mean()), off_proton_max_charge=worst_a,
                             stationary_endpoints=int(stationary.sum())),
                seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------------------
# Theorem 12: SecondGD on G with the almost lambda-harmonic potential learns one unit
# --------------------------------------------------------------------------------------------------------------


def check_theorem12(seeds=64, quick=False, *, potential=("almost_harmonic", {"d": 3, "eps": AH_EPS, "lam": 1.0}),
                    d=3, k=2, c=0.2, candidates=8, lr=0.01, steps=None, radius=None, min_rate=0.9, seed=3):
    r"""Theorem 12: SecondGD (Algorithm 2) on ``G = L + |a|^2`` ends with some ``theta_i`` within
    ``eps`` of some ``w_j``. Teacher per the theorem (``w ~ N(0, c d log d I)``, ``b ~ U[-1, 1]``);
    the theorem lets us *choose* the start (Lemma 16): the best of ``candidates`` random
    configurations by ``min_a G``, with ``a`` optimal. The proof uses the potential ``Phi_{eps'/k}`` to get
    within ``eps'``, so with the potential's ``eps`` the claimed radius is ``k eps`` (the default ``radius``).
    The theorem holds with high probability over the teacher: PASS needs ``min_rate`` (90%) of the seeds.
    """
    _require_x64()
    t0 = time.perf_counter()
    from earnshaw.dynamics.descent import second_gd
    from earnshaw.loss import optimal_loss
    from earnshaw.network import random_teacher

    pot = _potential(potential[0], **potential[1])
    eps = float(dict(pot.params).get("eps", AH_EPS))
    radius = k * eps if radius is None else radius  # the proof runs Phi_{eps'/k} and claims eps' = k eps
    steps = steps or (3000 if quick else 10_000)
    kt, kc = jax.random.split(jax.random.key(seed))
    teacher = random_teacher(kt, d=d, k=k, batch=seeds, convention="thm12", c=c)
    std = math.sqrt(c * d * math.log(d))
    cand = std * jax.random.normal(kc, (seeds, candidates, k, d))
    tb = jax.tree_util.tree_map(lambda x: jnp.repeat(x[:, None], candidates, 1), teacher)
    best = jnp.argmin(optimal_loss(pot, tb, cand, reg=1.0), axis=1)
    th0 = cand[jnp.arange(seeds), best]
    start = Student(a=optimal_a(pot, teacher, th0, reg=1.0), theta=th0)
    traj = second_gd(pot, teacher, start, lr=lr, max_steps=steps, eta=1e-4, gamma=1e-4, objective="G",
                     save_every=steps, on_divergence="ignore")
    dist0 = _min_dist(th0, teacher.w)
    dist = _min_dist(traj.final.theta, teacher.w)
    ok = dist < radius
    status = traj.status_names()
    return _row("Theorem 12", "σ_ε (Lemma 13)", _pot_label(pot),
                f"SecondGD on G: some |θᵢ − wⱼ| < {radius:g} (w.h.p.: ≥{100 * min_rate:.0f}%)",
                f"SecondGD ≤{steps} steps, lr={lr}, best of {candidates} starts, thm12 teacher c={c}, d={d}, k={k}",
                ok, f"min dist {dist.max():.1e}", min_rate=min_rate,
                details=dict(start_within=float((dist0 < radius).mean()),
                             status={s_: int((status == s_).sum()) for s_ in set(status.tolist())}),
                seconds=time.perf_counter() - t0)


def _unresolved_a(traj):
    """``a`` after the last node: the saved point before the last when ``resolve_a`` appended one
    (``T = k + 2``), else the final ``a``. Works with batch axes (``params.a`` is ``(*B, T, k)``)."""
    a = traj.params.a
    return a[..., -2, :] if a.shape[-2] == a.shape[-1] + 2 else traj.final.a


def _min_dist(theta, w):
    return np.asarray(jnp.linalg.norm(theta[..., :, None, :] - w[..., None, :, :], axis=-1).min(axis=(-2, -1)))


# --------------------------------------------------------------------------------------------------------------
# Theorem 17: node-wise descent recovers every unit
# --------------------------------------------------------------------------------------------------------------


def check_theorem17(seeds=32, quick=False, *, potential=("almost_harmonic", {"d": 3, "eps": AH_EPS, "lam": 1.0}),
                    d=3, k=2, w_scale=0.7, min_sep=1.0, b_min=0.5, init_theta="best_of", n_starts=64,
                    node_steps=None, lr=0.01, match_tol=1e-2, seed=4):
    r"""Theorem 17: node-wise descent (Algorithm 3) recovers every teacher unit.

    1. MATH.md section 5's example (ball ``eps = 0.5``, ``d = 3``, ``theta_i = 0`` starts): ``L = 1.17e-5``
       after both nodes and ``4.0e-7`` after re-solving ``a`` (within 10%).
    2. ``seeds - 1`` random teachers (``seeds`` without the example), in the theorem's setting with explicit
       constants: ``w ~ N(0, c d log d I)`` with ``c = w_scale^2 / (d log d)`` (``w_scale = 0.7``: ``c = 0.15``),
       kept when the units are at least ``min_sep = 2 eps`` apart (our constant for Lemma 27's ``Omega(d log d)``
       separation: no proton sits in another's non-harmonic core),
       and ``b ~ U[-1, 1]`` conditioned on ``|b_j| >= b_min`` (Lemma 27's ``|b_j| >= 1/poly(d)``; a unit with
       ``b_j ~ 0`` is invisible to the loss and cannot be "recovered"). Each unit starts as in the proof
       (Lemma 26, a search over starts): ``init_theta="best_of"``, the best of ``theta = 0`` and
       ``n_starts - 1`` draws from the teacher prior ``N(0, w_scale^2 I)`` by single-node optimal loss.

    A seed passes when every unit is matched within ``match_tol`` (position relative to ``1 + max |w|``, and
    charge) after re-solving ``a``, and every node's SecondGD stopped by its rule (Algorithm 2's certificate)
    within ``node_steps``: a run that used up its budget does not count.

    Why not ``theta_i = 0`` for the random teachers: the force on a unit at the start is proportional to its
    optimal charge there, ``P(0)`` (``P = sum_j b_j Phi(., w_j) - sum_{i'<i} a_i' Phi(., theta_i')``), and for
    the second node ``P(0)`` is often tiny because the learned unit cancels its proton's field; the SecondGD
    steps needed grow like ``1 / P(0)^2``. With ``theta_i = 0`` and ``1e5`` steps per node, 6 of these 31
    random teachers (``|P(0)| = 0.005-0.008``, remaining proton at ``|w| = 1.5-2.3``) ran out of steps, not
    at a critical point (they need 1.2e5-4.9e5 steps); with ``1e6`` steps these 31 pass but 4 of 127 teachers
    (``seeds=128``) still run out. ``init_theta="zero"`` (and ``node_steps``) keep that setting for comparison.
    """
    _require_x64()
    t0 = time.perf_counter()
    from earnshaw.dynamics.nodewise import nodewise_descent
    from earnshaw.landscape.matching import match_units

    pot = _potential(potential[0], **potential[1])
    node_steps = node_steps or 100_000
    example = (k == 2 and d == 3)
    n_random = max(seeds - 1, 0) if example else seeds
    # random teachers with separated units and |b| >= b_min
    kw, kb, ks = jax.random.split(jax.random.key(seed), 3)
    kinit = jax.random.fold_in(jax.random.key(seed), 1)
    tries = 8 * seeds + 16
    w = w_scale * np.asarray(jax.random.normal(kw, (tries, k, d)))
    sep = (np.linalg.norm(w[:, :, None] - w[:, None], axis=-1) + 1e9 * np.eye(k)).min(axis=(-2, -1))
    idx = np.flatnonzero(sep >= min_sep)[:n_random]
    b = np.asarray(jax.random.uniform(kb, (tries, k), minval=b_min, maxval=1.0) * jnp.where(
        jax.random.bernoulli(ks, 0.5, (tries, k)), 1.0, -1.0))
    teacher = Teacher(b=jnp.asarray(b[idx]), w=jnp.asarray(w[idx]))
    n = teacher.b.shape[0]
    opts = dict(lr=lr, max_steps=node_steps, eta=1e-6, gamma=1e-6, resolve_a=True, on_divergence="ignore")
    init = dict(init_theta=init_theta)
    if init_theta != "zero":
        init.update(init_scale=w_scale, n_starts=n_starts)
    traj = nodewise_descent(kinit if init_theta != "zero" else None, pot, teacher,
                            Student(a=jnp.zeros((n, k)), theta=jnp.zeros((n, k, d))), **opts, **init)
    _, dist, cerr = match_units(traj.final.theta, traj.final.a, teacher.w, teacher.b)
    wn = np.linalg.norm(np.asarray(teacher.w), axis=-1)
    worst_rel = np.maximum(dist / (1 + wn.max(-1, keepdims=True)), cerr).max(-1)
    status = traj.status_names()
    ok = (worst_rel < match_tol) & (status == "converged")
    L_res = np.asarray(traj.final_loss)
    details = dict(init_theta=init_theta, n_starts=n_starts if init_theta == "best_of" else None,
                   status={s_: int((status == s_).sum()) for s_ in set(status.tolist())},
                   max_unit_error=float(worst_rel.max()) if n else 0.0,
                   max_final_loss=float(L_res.max()) if n else 0.0,
                   max_grad_evals=int(np.max(np.asarray(traj.n_grad_evals))) if n else 0)
    run = (f"{n} random teachers, w~N(0,{w_scale}²I), |b|∈[{b_min:g},1], min sep {min_sep:g}, "
           f"{'θᵢ=0' if init_theta == 'zero' else f'{init_theta} {n_starts} starts'}, "
           f"≤{node_steps:.0e} SecondGD steps/node, d={d}, k={k}")
    worst = f"unit error {details['max_unit_error']:.1e}; {int((status != 'converged').sum())} runs out of steps"
    if example:
        # MATH.md section 5's example, theta_i = 0 starts as printed there
        ex_t = Teacher(b=jnp.array([0.9, -0.6]), w=jnp.array([[1.2, 0.0, 0.0], [-0.8, 0.9, 0.4]]))
        ex = nodewise_descent(None, pot, ex_t, k=2, init_theta="zero", **opts)
        L_nodes, L_ex = float(ex.losses[-2]), float(ex.final_loss)
        ok_example = (abs(L_nodes - 1.17e-5) <= 0.1 * 1.17e-5 and abs(L_ex - 4.0e-7) <= 0.1 * 4.0e-7
                      and str(ex.status_names()) == "converged")
        ok = np.concatenate([[ok_example], ok])
        details.update(example_L_after_nodes=L_nodes, example_L_resolved=L_ex, example_ok=bool(ok_example),
                       example_a_after_nodes=np.asarray(_unresolved_a(ex)).tolist(),
                       example_a=np.asarray(ex.final.a).tolist())
        run = f"MATH.md §5 example (L={L_nodes:.2e}, re-solved a {L_ex:.1e}) + " + run
    return _row("Theorem 17", "σ_ε (Lemma 13)", _pot_label(pot), "node-wise descent recovers every unit", run,
                ok, worst, details=details, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------------------
# Appendix F: sign activation on S^1 (Lemmas 29, 31) and polynomial potentials on S^{d-1} (Theorem 30)
# --------------------------------------------------------------------------------------------------------------


def _circle(t):
    return jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)


def _angle_dist(t, s):
    return jnp.abs(jnp.mod(t - s + jnp.pi, 2 * jnp.pi) - jnp.pi)


def check_lemma29(seeds=200, quick=False, *, potential="sign", k=3, grid=None, lr=0.05, steps=None, starts=16,
                  seed=5):
    r"""Lemma 29: on ``S^1`` with the sign activation, the single-node loss ``L*(t) = -P(t)^2`` (eq. 3 at
    optimal ``a``) has its local minima only at ``+-w_j``.

    Per seed (random angles ``s_j`` and ``b ~ U[-1, 1]``): (1) every strict local minimum of ``L*`` on a fine
    grid lies within one grid step of some ``+-s_j``; (2) descent on the angle, ``t <- t - eta_n sgn(L*'(t))``
    with ``eta_n = lr / (1 + n / 50)`` (the loss is piecewise smooth with kinks, so plain GD rattles around the
    kinks), from ``starts`` random angles ends within 4 final steps of some ``+-w_j``. A smooth potential on the
    circle (``potential="erf"``) fails.
    """
    _require_x64()
    t0 = time.perf_counter()

    pot = _potential(potential)
    grid = grid or (4096 if quick else 16384)
    steps = steps or (4000 if quick else 10_000)
    ks, kb, kt = jax.random.split(jax.random.key(seed), 3)
    s = jax.random.uniform(ks, (seeds, k), maxval=2 * jnp.pi)
    b = jax.random.uniform(kb, (seeds, k), minval=-1.0, maxval=1.0)
    teacher = Teacher(b=b, w=_circle(s))
    h = 2 * np.pi / grid
    targets = jnp.concatenate([s, s + jnp.pi], -1)
    grid_far = np.asarray(_lemma29_grid_fn(pot, grid)(teacher, targets))
    ok_grid = grid_far <= 1.01 * h
    # descent on the angle from random starts: normalised (sign) steps, diminishing so they settle on kinks
    t_start = jax.random.uniform(kt, (seeds, starts), maxval=2 * jnp.pi)
    t_end = _lemma29_descent_fn(pot, steps, lr)(teacher, t_start)
    gd_far = np.asarray(_angle_dist(t_end[..., None], targets[:, None, :]).min(-1).max(-1))
    final_step = lr / (1 + steps / 50)
    ok_gd = gd_far <= 4 * final_step
    ok = ok_grid & ok_gd
    return _row("Lemma 29", potential, _circle_label(potential, pot),
                "local minima of L*(t) = −P(t)² only at ±wⱼ",
                f"grid of {grid} angles; descent on the angle ({starts} starts × {steps} steps), k={k}",
                ok, f"grid {grid_far.max():.1e} rad, GD {gd_far.max():.1e} rad from ±wⱼ",
                details=dict(grid_ok=float(ok_grid.mean()), gd_ok=float(ok_gd.mean())),
                seconds=time.perf_counter() - t0)


@functools.lru_cache(maxsize=None)
def _lemma29_descent_fn(pot, steps, lr):
    def loss(t, teacher):
        return -(pot(_circle(t), teacher.w) @ teacher.b) ** 2

    def single(teacher, t0):
        def body(n, t):
            g = jax.grad(loss)(t, teacher)
            step = lr / (1.0 + n / 50.0)
            return jnp.mod(t - step * jnp.where(jnp.isfinite(g), jnp.sign(g), 0.0), 2 * jnp.pi)

        return jax.vmap(lambda t: jax.lax.fori_loop(0, steps, body, t))(t0)

    return jax.jit(jax.vmap(single))


@functools.lru_cache(maxsize=None)
def _lemma29_grid_fn(pot, grid):
    tg = jnp.linspace(0.0, 2 * jnp.pi, grid, endpoint=False)

    def single(teacher, targets):
        P_ = pot(_circle(tg)[:, None, :], teacher.w[None]) @ teacher.b
        L = -P_**2
        tol = 1e-7
        strict = (L < jnp.roll(L, 1) - tol) & (L < jnp.roll(L, -1) - tol)
        far = _angle_dist(tg[:, None], targets[None]).min(-1)
        return jnp.max(jnp.where(strict, far, 0.0))

    return jax.jit(jax.vmap(single))


def check_lemma31(seeds=100, quick=False, *, potential="sign", k=2, grid=None, charges=1.0, seed=6):
    r"""Lemma 31: on ``S^1``, sign activation, fixed unit charges (the paper's ``a = -1, b = 1``; natural sign
    ``a = b = 1``), loss eq. (2): no strict local minima except the global minima (electrons on the protons).

    Per seed (random proton angles), ``L`` is evaluated on a ``grid x grid`` torus of electron angles
    (``k = 2``); every strict local minimum (below all 8 neighbours by more than 1e-12) must be a matching:
    each electron within a grid step of a distinct proton. ``charges`` other than 1 (electron charge
    ``charges``, proton 1) make spurious strict minima possible.
    """
    _require_x64()
    t0 = time.perf_counter()
    if k != 2:
        raise ValueError("check_lemma31 scans the 2-torus: k=2")
    pot = _potential(potential)
    grid = grid or (256 if quick else 720)
    s = jax.random.uniform(jax.random.key(seed), (seeds, k), maxval=2 * jnp.pi)
    res = np.asarray(_lemma31_grid_fn(pot, grid, float(charges))(s))
    h = 2 * np.pi / grid
    n_min, worst = res[:, 0], res[:, 1]
    ok = worst <= 1.5 * h
    return _row("Lemma 31", potential, _circle_label(potential, pot),
                "fixed unit charges: strict minima only at matchings",
                f"L (eq. 2) on a {grid}×{grid} torus grid, k={k}, a={charges:g}, b=1",
                ok, f"strict minima ≤ {worst.max():.1e} rad from a matching",
                details=dict(strict_minima_per_seed=float(n_min.mean()), max_from_matching=float(worst.max())),
                seconds=time.perf_counter() - t0)


@functools.lru_cache(maxsize=None)
def _lemma31_grid_fn(pot, grid, charge):
    tg = jnp.linspace(0.0, 2 * jnp.pi, grid, endpoint=False)
    u = _circle(tg)

    def single(s):
        w = _circle(s)
        a = jnp.array([charge, charge])
        b = jnp.ones(2)
        Pee = pot(u[:, None, :], u[None, :, :])                 # (g, g)
        Pep = pot(u[:, None, :], w[None, :, :]) @ b               # (g,)
        L = 2 * a[0] * a[1] * Pee - 2 * (a[0] * Pep[:, None] + a[1] * Pep[None, :])
        tol = 1e-7  # arcsin near rho = +-1 amplifies rounding to ~1e-8: flat lines must not look strict
        strict = jnp.ones_like(L, bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di or dj:
                    strict &= L < jnp.roll(L, (di, dj), (0, 1)) - tol
        d1 = _angle_dist(tg[:, None, None], s[None, None, :])   # electron 1 to each proton
        d2 = _angle_dist(tg[None, :, None], s[None, None, :])
        match = jnp.minimum(jnp.maximum(d1[..., 0], d2[..., 1]), jnp.maximum(d1[..., 1], d2[..., 0]))
        return jnp.stack([strict.sum().astype(float), jnp.max(jnp.where(strict, match, 0.0))])

    return jax.jit(jax.vmap(single))


def check_theorem30(seeds=400, quick=False, *, l=3, b=(0.9, -0.6, 0.3, 0.0), w=None, lr=0.1, steps=None,
                    tol=1e-3, seed=7):
    r"""Theorem 30: ``Phi = (theta . w)^l`` (``h_l`` activation, ``l >= 3``) on ``S^{d-1}`` with orthonormal
    ``w_j``: projected GD on the single-node loss (eq. 3) from random starts (``a`` optimal at the start)
    ends only at ``+-w_j`` with ``b_j != 0``; and the Riemannian Hessian of ``L* = -P^2`` there is
    ``2 l b_j^2 I`` (MATH.md section 6). Runs that stall on the flat set ``P = 0`` (the maximum of ``L*``,
    about 0.1-0.7% of starts) are not minima and are counted separately.

    ``l = 2`` (then ``+-e_2, +-e_3`` are saddles) or non-orthonormal ``w`` fail.
    """
    _require_x64()
    t0 = time.perf_counter()
    from earnshaw.dynamics.descent import gradient_descent

    pot = _potential("hermite", m=l)
    b = jnp.asarray(b, float)
    kd = b.shape[0]
    W = jnp.eye(kd) if w is None else jnp.asarray(w, float)
    W = W / jnp.linalg.norm(W, axis=-1, keepdims=True)
    d = W.shape[-1]
    teacher = Teacher(b=b, w=W)
    steps = steps or (2000 if quick else 20_000)
    th = jax.random.normal(jax.random.key(seed), (seeds, 1, d))
    th = th / jnp.linalg.norm(th, axis=-1, keepdims=True)
    student = Student(a=optimal_a(pot, teacher, th), theta=th)
    traj = gradient_descent(pot, teacher, student, lr=lr, max_steps=steps, manifold="sphere", save_every=steps,
                            on_divergence="ignore")
    end = traj.final.theta[:, 0]
    nz = np.asarray(jnp.abs(b) > 0)
    targets = jnp.concatenate([W[nz], -W[nz]])
    far = np.asarray(jnp.linalg.norm(end[:, None] - targets[None], axis=-1).min(-1))
    Pend = np.asarray(pot(end[:, None], W[None]) @ b)
    flat = (np.abs(Pend) < 1e-3) & (far > tol)
    ok_gd = (far <= tol) | flat
    # Riemannian Hessian of L* = -P^2 at each +-w_j, through the retraction theta = (w + u)/|w + u|
    hess_err = 0.0
    for j in np.flatnonzero(nz):
        for sgn in (1.0, -1.0):
            wj = sgn * W[j]
            basis = jnp.linalg.svd(jnp.eye(d) - jnp.outer(wj, wj))[0][:, :d - 1]
            f = lambda u: -(pot((wj + basis @ u) / jnp.linalg.norm(wj + basis @ u), W) @ b) ** 2  # noqa: B023,E731
            H = np.asarray(jax.hessian(f)(jnp.zeros(d - 1)))
            pred = 2 * l * float(b[j]) ** 2
            hess_err = max(hess_err, float(np.abs(H - pred * np.eye(d - 1)).max() / pred))
    ok_hess = hess_err < 1e-6
    ok = ok_gd & ok_hess
    counts = {}
    for j in np.flatnonzero(nz):
        for sgn, lab in ((1, "+"), (-1, "-")):
            counts[f"{lab}w{j + 1}"] = int((np.linalg.norm(np.asarray(end) - sgn * np.asarray(W[j]), axis=-1)
                                            <= tol).sum())
    orth = bool(np.allclose(np.asarray(W @ W.T), np.eye(kd), atol=1e-12))
    return _row("Theorem 30", f"h_{l} (Hermite)", f"(θ·w)^{l} on S^{d - 1}",
                "minima only at ±wⱼ, Riemannian Hessian 2l·bⱼ²",
                f"projected GD ({steps} steps, lr={lr}), b={tuple(float(x) for x in b)}, "
                f"{'orthonormal' if orth else 'non-orthonormal'} w",
                ok, f"end {far[~flat].max() if (~flat).any() else 0.0:.1e} from ±wⱼ; Hessian rel. err {hess_err:.1e}",
                details=dict(endpoint_counts=counts, stalled_on_P0=int(flat.sum()), hessian_rel_err=hess_err),
                seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------------------
# all checks
# --------------------------------------------------------------------------------------------------------------

#: ``name -> (function, seeds in quick mode, seeds in full mode)``; ``seeds=`` of :func:`verify` overrides both.
CHECKS = {
    "theorem5": (check_theorem5, 50, 500),
    "earnshaw": (check_earnshaw, 50, 500),
    "theorem11": (check_theorem11, 32, 200),
    "theorem12": (check_theorem12, 16, 64),
    "theorem17": (check_theorem17, 4, 32),
    "lemma29": (check_lemma29, 100, 500),
    "lemma31": (check_lemma31, 50, 200),
    "theorem30": (check_theorem30, 200, 1000),
}


def verify(quick: bool = False, seeds: Optional[int] = None, *, only=None,
           progress: Optional[Callable[[str, int, int], None]] = None) -> list:
    """Run every check (or those named in ``only``) and return their rows, in order.

    Args:
      quick: fewer seeds and steps (about a minute or two on two CPU cores, JIT included).
      seeds: seeds per check, overriding the per-check defaults of :data:`CHECKS`.
      only: iterable of names from :data:`CHECKS`.
      progress: called as ``progress(name, done, total)`` before each check and at the end.
    """
    _require_x64()
    names = list(CHECKS) if only is None else list(only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; valid: {', '.join(CHECKS)}")
    rows = []
    for i, name in enumerate(names):
        if progress is not None:
            progress(name, i, len(names))
        fn, nq, nf = CHECKS[name]
        n = seeds if seeds is not None else (nq if quick else nf)
        row = fn(seeds=n, quick=quick)
        row["name"] = name
        rows.append(row)
    if progress is not None:
        progress("done", len(names), len(names))
    return rows


def table_rows(rows) -> list:
    """Rows without ``details``, flat and JSON/Parquet friendly (details as a JSON string)."""
    import json

    out = []
    for r in rows:
        flat = {k: r[k] for k in ("name",) + ROW_KEYS if k in r}
        flat["seconds"] = float(r.get("details", {}).get("seconds", float("nan")))
        flat["details"] = json.dumps(r.get("details", {}), default=_jsonable)
        out.append(flat)
    return out


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
