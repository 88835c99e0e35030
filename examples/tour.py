"""A five-minute tour of earnshaw (docs/index.md shows its output).

EARNSHAW_QUICK=1 runs 16 students instead of 256, with the explicit solver tsit5, which compiles in a
fraction of kvaerno3's time (the test suite runs it so).
"""
import os

import jax

jax.config.update("jax_enable_x64", True)  # landscape analysis wants float64
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import earnshaw as es  # noqa: E402

n, solver = (16, "tsit5") if os.environ.get("EARNSHAW_QUICK") else (256, "kvaerno3")

# 1. The potential an activation induces, exact, and checked against Monte Carlo.
pot = es.potential("erf")
u, v = jnp.array([1.0, 0.5, -0.3]), jnp.array([0.2, -0.7, 0.9])
mc, se = es.monte_carlo(jax.random.key(0), pot, u, v, 1_000_000)
print(f"Phi_erf(u, v) = {float(pot(u, v)):.10f}   Monte Carlo {mc:.5f} +- {se:.5f}")

# 2. A teacher (protons) and a batch of n = 256 students (electrons); the exact population loss.
teacher = es.random_teacher(jax.random.key(1), d=4, k=3, scale=0.5)
students = es.random_student(jax.random.key(2), d=4, k=3, scale=0.5, batch=n)
print("loss of the teacher itself:", float(es.population_loss(pot, teacher,
                                                                  es.Student(a=teacher.b, theta=teacher.w))))
print(f"losses of {n} random students: median", float(jnp.median(es.population_loss(pot, teacher, students))))

# 3. Gradient flow for all n seeds in one compiled call (implicit solver kvaerno3: the flow is stiff).
traj = es.gradient_flow(pot, teacher, students, t1=1e5, solver=solver, rtol=1e-5, atol=1e-7, gtol=1e-9)
names, counts = np.unique(traj.status_names(), return_counts=True)
print("flow status:", {str(n): int(c) for n, c in zip(names, counts)})

# 4. Polish to critical points with Newton, then classify them.
points, gnorm = es.refine(pot, teacher, traj.final)
report = es.analyze(pot, teacher, points, gtol=1e-9)
print("max gradient norm after Newton:", float(gnorm.max()))
print({k: round(v, 3) for k, v in report.fractions().items()})
worst = int(np.argmax(report.loss))
print(f"worst seed {worst}: loss {report.loss[worst]:.3e}, lambda_min {report.lambda_min[worst]:.2e}, "
      f"verdict {str(report.verdict[worst])!r}, units recovered {report.recovered[worst]}/3")

# 5. Theorem 5 (corrected): the flow is electron-proton dynamics under 2 Phi.
res, scale = es.theorem5_residual(pot, teacher, es.Student(a=students.a[0], theta=students.theta[0]))
print(f"Theorem 5: |-grad L - electron velocity| = {res:.1e} (velocities ~ {scale:.2f})")
