"""earnshaw: learning depth-2 networks as electrons moving among protons.

The student ``f_hat(x) = sum_i a_i sigma(x, theta_i)`` learns the teacher
``f(x) = sum_j b_j sigma(x, w_j)`` under ``x ~ N(0, I_d)``; the population loss is
the energy of electrons (``theta_i``, charge ``-a_i``) and fixed protons (``w_j``,
charge ``b_j``) under the potential ``Phi(u, v) = E[sigma(X, u) sigma(X, v)]``.

>>> import jax, earnshaw as es
>>> pot = es.potential("erf")
>>> teacher = es.random_teacher(jax.random.key(0), d=10, k=5)
>>> float(es.population_loss(pot, teacher, es.Student(a=teacher.b, theta=teacher.w)))
0.0
"""
from earnshaw._typing import Student as Student, Teacher as Teacher
from earnshaw.activations import (ACTIVATIONS as ACTIVATIONS, Activation as Activation,
                                  activation as activation, custom as custom)
from earnshaw.inputs import whiten as whiten
from earnshaw.dynamics.forces import electron_velocity as electron_velocity, theorem5_residual as theorem5_residual
from earnshaw.loss import (empirical_loss as empirical_loss, objective as objective, optimal_a as optimal_a,
                           optimal_loss as optimal_loss, population_loss as population_loss,
                           reduced_loss as reduced_loss, regularised_loss as regularised_loss)
from earnshaw.network import predict as predict, random_student as random_student, random_teacher as random_teacher
from earnshaw.potentials import (POTENTIALS as POTENTIALS, MixedPotential as MixedPotential, Potential as Potential,
                                  mixed_potential as mixed_potential, potential as potential)
from earnshaw.potentials.harmonic import Harmonicity as Harmonicity, harmonicity as harmonicity
from earnshaw.potentials.monte_carlo import monte_carlo as monte_carlo
from earnshaw.potentials.realize import NotRealizableError as NotRealizableError, realize as realize

from earnshaw.problem import Problem as Problem
from earnshaw.dynamics.descent import (gradient_descent as gradient_descent, hessian_descent as hessian_descent,
                                       optimize as optimize, perturbed_gd as perturbed_gd, second_gd as second_gd)
from earnshaw.dynamics.nodewise import nodewise_descent as nodewise_descent
from earnshaw.dynamics.flow import gradient_flow as gradient_flow
from earnshaw.dynamics.online import OnlineRun as OnlineRun, online_ode as online_ode, online_sgd as online_sgd
from earnshaw.dynamics.order import (OrderParams as OrderParams, order_flow as order_flow, order_gd as order_gd,
                                     order_loss as order_loss, order_parameters as order_parameters,
                                     student_from_order as student_from_order)
from earnshaw.landscape.analyze import Report as Report, analyze as analyze
from earnshaw.landscape.census import Census as Census, census as census
from earnshaw.landscape.certify import Certificate as Certificate, certify as certify
from earnshaw.landscape.critical import refine as refine
from earnshaw.landscape.hessian import hessian as hessian, spectrum as spectrum
from earnshaw.landscape.matching import match_units as match_units
from earnshaw.trajectory import DivergenceError as DivergenceError, STATUS as STATUS, Trajectory as Trajectory

__version__ = "0.1.0"
