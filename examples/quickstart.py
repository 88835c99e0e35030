"""The README's example: 200 students learn one erf teacher by gradient flow; what did each end at?"""
import jax
import numpy as np

import earnshaw as es

jax.config.update("jax_enable_x64", True)                  # landscape numerics want float64
pot = es.potential("erf")                                   # exact Phi(u, v) = E[erf(u.X) erf(v.X)]
teacher = es.random_teacher(jax.random.key(0), d=4, k=3, scale=0.5)              # 3 protons in R^4
students = es.random_student(jax.random.key(1), d=4, k=3, scale=0.5, batch=200)   # 200 seeds, one call
traj = es.gradient_flow(pot, teacher, students, t1=1e5, solver="kvaerno3", rtol=1e-5, atol=1e-7)
points, gnorm = es.refine(pot, teacher, traj.final)        # Newton: end points -> critical points
report = es.analyze(pot, teacher, points, gtol=1e-9)       # Hessian spectrum, matching, verdict
print({k: round(v, 3) for k, v in report.fractions().items()})
worst = int(np.argmax(report.loss))
print(f"worst seed {worst}: loss {report.loss[worst]:.2e}, lambda_min {report.lambda_min[worst]:.1e}, "
      f"{str(report.verdict[worst])!r}, units recovered {report.recovered[worst]}/3")
