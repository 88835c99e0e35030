"""Population vs empirical loss for the almost lambda-harmonic activation (docs/math.md section 1b, 'Heavy tails').

sigma(x, w) = (2 pi)^(3/4) exp(|x|^2/4) g(|x - w|) realises Phi_eps exactly: E[sigma(X,u) sigma(X,v)] = Phi_eps.
But g ~ exp(-r), so E[sigma^4] is infinite: sample averages converge without a CLT, dominated by rare large |x|.

    .venv/bin/python examples/heavy_tails.py
"""
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import earnshaw as es  # noqa: E402

pot = es.potential("almost_harmonic", d=3, eps=0.5, lam=1.0)
print(pot, "bounded:", pot.bounded, "lambda-harmonic for r >=", pot.harmonic_radius)
print("Phi(0.25) =", round(float(pot.profile(0.25)), 10), " Phi(1) =", round(float(pot.profile(1.0)), 10))

# E[sigma(X, w)^2] = Phi(0) = 1 for every w; Monte Carlo with 400k samples, 5 seeds each
for norm in (0.0, 4.0):
    w = jnp.array([norm, 0.0, 0.0])
    est = [es.monte_carlo(jax.random.key(s), pot, w, w, 400_000)[0] for s in range(5)]
    print(f"|w| = {norm}: E[sigma^2] = 1, Monte Carlo estimates", " ".join(f"{e:.3f}" for e in est))

# population loss (exact, through Phi) against sample losses, for a teacher near and far from the origin
for shift in (0.0, 2.5):
    teacher = es.Teacher(b=jnp.array([1.0, -0.7]), w=jnp.array([[0.3, 0.0, 0.0], [-0.4, 0.5, 0.0]]) + shift)
    student = es.Student(a=jnp.array([0.8, -0.5]), theta=teacher.w + jnp.array([[0.2, -0.1, 0.0], [0.0, 0.3, 0.1]]))
    pop = float(es.population_loss(pot, teacher, student))
    emp = [float(es.empirical_loss(pot, teacher, student, jax.random.normal(jax.random.key(s), (100_000, 3))))
           for s in range(6)]
    print(f"teacher shifted by {shift}: population loss {pop:.5f}; empirical (n=1e5, 6 seeds)",
          " ".join(f"{e:.5f}" for e in emp))
