"""Experiment configs for ``earnshaw run`` and ``earnshaw sweep``: TOML in, validated models out.

A config names the teacher, the student, the activation (or a radial potential), the
algorithm and its options, the analysis tolerances, the number of seeds and, for a
sweep, the grid axes::

    name = "erf-d5"
    activation = "erf"          # or: potential = "yukawa" with [potential_params]
    seed = 0                    # master seed: teachers and students derive their keys from it
    seeds = 64                  # students per cell, run as one batched call

    [teacher]
    d = 5
    k = 2
    scale = 0.5                 # w_j ~ N(0, scale^2 I), as random_teacher(scale=...); default 1/sqrt(d)
    # w = "identity"          # or an explicit teacher: w_j = e_j, or a .npz/.npy file; b = output weights

    [student]
    init_scale = 1.0            # theta_i ~ N(0, init_scale^2 / d I); k defaults to teacher.k
    # activation = ["erf", "relu"]   # per-unit activations (also [teacher] activation); default: the top-level one

    [algorithm]
    name = "gradient_flow"      # any of ALGORITHMS
    options = { t1 = 1e3, rtol = 1e-6, atol = 1e-8, gtol = 1e-8 }

    [grid]                      # axes: dotted paths into this config, each a list of values
    teacher.k = [2, 3]
    student.init_scale = [0.5, 1.0]

Every model forbids unknown keys, and :func:`load_config` turns pydantic's errors into
one line per problem that names the field path, e.g. ``teacher.d: must be >= 1 (got -3)``.
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import pathlib
import tomllib
from typing import Annotated, Dict, List, Optional, Union

import numpy as np
import tomli_w
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError,
                      field_validator, model_validator)

from earnshaw.activations import ACTIVATIONS, ALIASES
from earnshaw.dynamics.descent import gradient_descent, hessian_descent, perturbed_gd, second_gd
from earnshaw.dynamics.flow import SOLVERS, gradient_flow
from earnshaw.dynamics.nodewise import nodewise_descent
from earnshaw.loss import OBJECTIVES
from earnshaw.network import TEACHER_CONVENTIONS
from earnshaw.potentials import POTENTIALS, RADIAL_BUILDERS, mixed_potential, potential
from earnshaw.inputs import check_inputs
from earnshaw.problem import MANIFOLDS, TRAIN, train_groups

__all__ = ["ConfigError", "TeacherConfig", "StudentConfig", "AlgorithmConfig", "AnalysisConfig",
           "ExperimentConfig", "ALGORITHMS", "load_config", "parse_config", "expand_grid", "canonical_json",
           "stable_hash", "to_toml"]

Scalar = Union[StrictBool, StrictInt, float, str]

#: Arguments of the solvers that the sweep supplies itself (not options).
_RESERVED = ("pot", "teacher", "student", "key", "on_divergence", "k")
#: Top-level keys a grid axis may not vary.
_NOT_GRIDDABLE = ("name", "grid", "seeds", "save_paths")


def _solvers() -> dict:
    return {"gradient_flow": gradient_flow, "gradient_descent": gradient_descent, "perturbed_gd": perturbed_gd,
            "hessian_descent": hessian_descent, "second_gd": second_gd, "nodewise_descent": nodewise_descent}


#: Algorithm names a config may use (the solvers of :mod:`earnshaw.dynamics`).
ALGORITHMS = ("gradient_flow", "gradient_descent", "perturbed_gd", "hessian_descent", "second_gd",
              "nodewise_descent")


def algorithm_options(name: str) -> dict:
    """Option names of algorithm ``name`` and their defaults."""
    sig = inspect.signature(_solvers()[name])
    return {p: v.default for p, v in sig.parameters.items()
            if p not in _RESERVED and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)}


def _check_activation_name(v: str) -> str:
    if v not in ACTIVATIONS and v not in ALIASES and not (v.startswith("hermite") and v[7:].isdigit()):
        raise ValueError(f"unknown activation {v!r}; valid: {', '.join(ACTIVATIONS)}")
    return v


def _check_unit_activations(v):
    """A name for every unit of a side, or one name per unit (the length is checked where ``k`` is known)."""
    if v is None:
        return v
    if isinstance(v, list):
        if not v:
            raise ValueError("activation: give one name per unit (a non-empty list) or one name for all units")
        for i, name in enumerate(v):
            try:
                _check_activation_name(name)
            except ValueError as err:
                raise ValueError(f"activation[{i}]: {err}") from None
        return v
    return _check_activation_name(v)


# a side's activation: one name for all its units or one per unit
UnitActivations = Annotated[Optional[Union[str, List[str]]], AfterValidator(_check_unit_activations)]


class ConfigError(ValueError):
    """An invalid config; the message has one line per problem, each starting with the field path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeacherConfig(_Model):
    """The teacher (protons).

    Random (``w = "random"``, the default): ``w_j ~ N(0, scale^2 I)``, ``b_j ~ N(0, 1)`` (``"standard"``;
    ``scale`` means what it means for :func:`earnshaw.random_teacher`, and defaults to ``1/sqrt(d)``, so
    ``|w_j|`` is about 1), or Theorem 12's ``w ~ N(0, c d log d I)``, ``b ~ U[-1, 1]`` (``"thm12"``).

    Explicit: ``w = "identity"`` (``w_j = e_j``, needs ``k <= d``) or ``w = "teacher.npz"`` (arrays ``w``
    ``(k, d)`` and optionally ``b`` ``(k,)``) or ``"w.npy"`` (``w`` only); a relative path is read from the
    config file's folder. ``b`` sets the output weights of an explicit teacher (one value for all units, or
    one per unit; default 1, or the file's ``b``).

    Biases (units ``sigma(w . x + c)``): ``bias_scale`` draws ``c_j ~ N(0, bias_scale^2)`` for a random
    teacher; ``bias`` gives them for an explicit one (one value for all units, or one per unit). Neither:
    no biases (the paper's model).

    ``activation``: the teacher's own activation (one name for all its units) or one per unit (a list of
    ``k`` names), instead of the config's top-level ``activation`` (:func:`earnshaw.mixed_potential`).
    """

    d: StrictInt = Field(ge=1, description="input dimension")
    k: StrictInt = Field(ge=1, description="teacher units")
    convention: str = Field("standard", description="standard or thm12")
    scale: Optional[float] = Field(None, gt=0, description="standard deviation of each entry of w (standard "
                                                           "convention), as random_teacher(scale=...); "
                                                           "default 1/sqrt(d)")
    c: float = Field(1.0, gt=0, description="Theorem 12's variance constant (thm12 convention)")
    w: str = Field("random", description="random, identity, or a .npz/.npy file of teacher weights")
    b: Optional[Union[float, List[float]]] = Field(None, description="output weights of an explicit teacher")
    bias_scale: Optional[float] = Field(None, ge=0, description="random teacher: biases ~ N(0, bias_scale^2)")
    bias: Optional[Union[float, List[float]]] = Field(None, description="biases of an explicit teacher")
    activation: UnitActivations = Field(
        None, description="the teacher's activation, or one per unit; default: the top-level activation")

    @field_validator("convention")
    @classmethod
    def _convention(cls, v):
        if v not in TEACHER_CONVENTIONS:
            raise ValueError(f"unknown convention {v!r}; valid: {', '.join(TEACHER_CONVENTIONS)}")
        return v

    @model_validator(mode="after")
    def _explicit(self):
        if isinstance(self.activation, list) and len(self.activation) != self.k:
            raise ValueError(f"activation: one name per teacher unit (k={self.k}), got {len(self.activation)}")
        if self.w == "random":
            if self.b is not None:
                raise ValueError("b: only for an explicit teacher (w = \"identity\" or a file); a random "
                                 "teacher draws b")
            if self.bias is not None:
                raise ValueError("bias: only for an explicit teacher; a random teacher draws its biases "
                                 "with bias_scale")
            return self
        if self.bias_scale is not None:
            raise ValueError("bias_scale: only for a random teacher; give an explicit teacher's biases with bias")
        if isinstance(self.bias, list) and len(self.bias) != self.k:
            raise ValueError(f"bias: one value per teacher unit (k={self.k}), got {len(self.bias)}")
        if self.w == "identity":
            if self.k > self.d:
                raise ValueError(f"w: identity needs k <= d (w_j = e_j), got k={self.k}, d={self.d}")
        else:
            w, b = load_teacher_arrays(self.w)
            if w.shape != (self.k, self.d):
                raise ValueError(f"w: {self.w} holds w of shape {w.shape}, but the config says k={self.k}, "
                                 f"d={self.d}")
            if b is not None and self.b is not None:
                raise ValueError(f"b: {self.w} holds b already; give b in one place")
            if b is not None and b.shape != (self.k,):
                raise ValueError(f"w: {self.w} holds b of shape {b.shape}, expected ({self.k},)")
        if isinstance(self.b, list) and len(self.b) != self.k:
            raise ValueError(f"b: one value per teacher unit (k={self.k}), got {len(self.b)}")
        return self

    def arrays(self):
        """``(w (k, d), b (k,))`` of an explicit teacher as NumPy arrays (None for a random one)."""
        if self.w == "random":
            return None
        if self.w == "identity":
            w, b = np.eye(self.d)[: self.k], None
        else:
            w, b = load_teacher_arrays(self.w)
        if b is None:
            b = np.broadcast_to(np.asarray(1.0 if self.b is None else self.b, float), (self.k,))
        return np.asarray(w, float), np.array(b, float)

    def bias_array(self):
        """An explicit teacher's biases ``(k,)`` as a NumPy array, or ``None``."""
        return None if self.bias is None else np.array(np.broadcast_to(np.asarray(self.bias, float), (self.k,)))


def load_teacher_arrays(path: str):
    """``(w, b or None)`` from a ``.npz`` (arrays ``w`` and optionally ``b``) or a ``.npy`` (``w``) file."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise ValueError(f"w: teacher file {path!r} does not exist (give \"random\", \"identity\" or a "
                         ".npz/.npy file)")
    try:
        if file.suffix == ".npy":
            return np.load(file, allow_pickle=False), None
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as z:
                if "w" not in z.files:
                    raise ValueError(f"w: {path} has no array named 'w' (it has {', '.join(z.files)})")
                return z["w"], (z["b"] if "b" in z.files else None)
    except (OSError, ValueError) as err:
        if str(err).startswith("w: "):
            raise
        raise ValueError(f"w: cannot read {path}: {err}") from None
    raise ValueError(f"w: teacher file {path!r} must end in .npz or .npy")


class StudentConfig(_Model):
    """The student (electrons) at initialisation: ``theta_i ~ N(0, init_scale^2 / d I)``, ``a_i ~ N(0, a_scale^2)``.

    ``a`` starts the output weights at given values instead (one for all units, or one per unit); with
    ``algorithm.options.train = "theta"`` they stay there (the soft committee machine, Safran and Shamir's
    setting). ``paired = true`` draws the starts from the seed, the teacher's size and these settings
    only, so cells that differ only in the activation (or potential) start from the same students.
    ``bias_scale`` gives the student biases ``c_i ~ N(0, bias_scale^2)`` (``0``: biases that start at
    zero and train; ``algorithm.options.train = "a+theta"`` keeps them fixed). ``activation``: the student's own
    activation or one per unit (a list of ``k`` names), instead of the top-level ``activation``.
    """

    k: Optional[StrictInt] = Field(None, ge=1, description="student units (default: teacher.k)")
    init_scale: float = Field(1.0, gt=0, description="typical norm of a student unit at the start")
    a_scale: float = Field(1.0, ge=0, description="standard deviation of the initial charges")
    a: Optional[Union[float, List[float]]] = Field(None, description="initial output weights (instead of random)")
    paired: StrictBool = Field(False, description="the same starts for cells that differ only in the activation")
    bias_scale: Optional[float] = Field(None, ge=0, description="student biases ~ N(0, bias_scale^2); none if unset")
    activation: UnitActivations = Field(
        None, description="the student's activation, or one per unit; default: the top-level activation")


class AlgorithmConfig(_Model):
    """The solver and its keyword options (checked against the solver's signature)."""

    name: str = "gradient_flow"
    options: Dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if v not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {v!r}; valid: {', '.join(ALGORITHMS)}")
        return v

    @model_validator(mode="after")
    def _options(self):
        allowed = algorithm_options(self.name)
        fixed = {}
        for key, value in self.options.items():
            if key not in allowed:
                raise ValueError(f"options.{key}: unknown option for {self.name}; valid: {', '.join(allowed)}")
            default = allowed[key]
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"options.{key}: must be true or false (got {value!r})")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"options.{key}: must be an integer (got {value!r})")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"options.{key}: must be a number (got {value!r})")
                value = float(value)
            fixed[key] = value
        _check_option_values(self.name, fixed)
        object.__setattr__(self, "options", fixed)
        return self


def _check_option_values(name: str, options: dict):
    """Option values that name something (an ODE solver, the trained parameters, ...) must name a valid one."""
    valid = {"solver": tuple(SOLVERS), "manifold": MANIFOLDS, "objective": tuple(OBJECTIVES)}
    if "train" in options:
        try:
            train_groups(options["train"])
        except ValueError:
            raise ValueError(f"options.train: unknown train {options['train']!r} for {name}; valid: {', '.join(TRAIN)}, "
                             "or a '+'-join of a, theta, bias (e.g. a+theta keeps biases fixed)") from None
    for key, choices in valid.items():
        if key in options and options[key] not in choices:
            raise ValueError(f"options.{key}: unknown {key} {options[key]!r} for {name}; valid: {', '.join(choices)}")


class AnalysisConfig(_Model):
    """How end points are polished and classified (see :func:`earnshaw.analyze`)."""

    refine: bool = Field(True, description="Newton polish before the analysis")
    gtol: float = Field(1e-9, gt=0)
    htol: float = Field(1e-6, gt=0)
    eps: float = Field(1e-3, gt=0)
    loss_tol: float = Field(1e-8, gt=0)
    match_tol: float = Field(1e-2, gt=0)


class ExperimentConfig(_Model):
    """One experiment (``earnshaw run``) or a grid of them (``earnshaw sweep``)."""

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9_.-]+$", description="run folder prefix")
    activation: Optional[str] = None
    potential: Optional[str] = None
    potential_params: Dict[str, Scalar] = Field(default_factory=dict)
    potential_options: Dict[str, Scalar] = Field(
        default_factory=dict, description="how an activation's potential is computed: method (closed, fast, "
        "quadrature, piecewise), order, tol, terms, radius; unknown keys are rejected")
    seed: StrictInt = Field(0, ge=0, description="master PRNG seed")
    seeds: StrictInt = Field(ge=1, description="student seeds per cell")
    save_paths: StrictInt = Field(16, ge=0, description="seeds per cell whose parameter paths are kept")
    teacher: TeacherConfig
    student: StudentConfig = Field(default_factory=StudentConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    grid: Dict[str, List[Scalar]] = Field(default_factory=dict)
    input_mean: Optional[List[float]] = Field(None, description="inputs X ~ N(input_mean, input_cov); (d,)")
    input_cov: Optional[List[List[float]]] = Field(None, description="input covariance (d, d), positive definite")

    @field_validator("activation")
    @classmethod
    def _activation(cls, v):
        return v if v is None else _check_activation_name(v)

    @field_validator("potential")
    @classmethod
    def _potential_name(cls, v):
        if v is not None and v not in POTENTIALS:
            raise ValueError(f"unknown potential {v!r}; valid: {', '.join(POTENTIALS)}")
        return v

    @field_validator("grid", mode="before")
    @classmethod
    def _flatten_grid(cls, v):
        # TOML dotted keys (teacher.k = [...]) arrive as nested tables: flatten them to "teacher.k"
        if not isinstance(v, dict):
            return v
        out = {}

        def walk(prefix, obj):
            for key, val in obj.items():
                path = f"{prefix}.{key}" if prefix else key
                if isinstance(val, dict):
                    walk(path, val)
                else:
                    out[path] = val

        walk("", v)
        return out

    @model_validator(mode="after")
    def _check(self):
        per_side = self.teacher.activation is not None or self.student.activation is not None
        if self.potential is not None and per_side:
            raise ValueError("teacher.activation/student.activation: per-unit activations are for inner-product "
                             "units; a radial potential (potential = ...) has none")
        both_sides = self.teacher.activation is not None and self.student.activation is not None
        if (self.activation is None) == (self.potential is None) and not (both_sides and self.activation is None):
            raise ValueError("give exactly one of activation (e.g. \"erf\") or potential (e.g. \"yukawa\"), or "
                             "teacher.activation and student.activation")
        if isinstance(self.student.activation, list) and len(self.student.activation) != self.student_k:
            raise ValueError(f"student.activation: one name per student unit ({self.student_k}), got "
                             f"{len(self.student.activation)}")
        if self.activation is not None and self.potential_params:
            raise ValueError("potential_params: only for a radial potential (potential = ...); "
                             "an activation's potential has no parameters")
        try:
            self.build_potential()
        except ValueError as err:
            where = "potential_options" if self.potential_options else "potential_params"
            raise ValueError(f"{where}: {err}") from None
        if self.input_mean is not None or self.input_cov is not None:
            try:
                check_inputs(self.input_mean, self.input_cov, self.teacher.d)
            except ValueError as err:
                raise ValueError(f"input_mean/input_cov: {err}") from None
        if isinstance(self.student.a, list) and len(self.student.a) != self.student_k:
            raise ValueError(f"student.a: one value per student unit ({self.student_k}), got {len(self.student.a)}")
        return self

    # -- derived ------------------------------------------------------------------------------------------

    @property
    def mixed(self) -> bool:
        """Whether the teacher or the student has activations of its own (per-unit activations)."""
        return self.teacher.activation is not None or self.student.activation is not None

    @property
    def potential_name(self) -> str:
        if self.mixed:
            return self.build_potential().name
        return self.activation if self.activation is not None else self.potential

    def unit_activations(self):
        """``(student names (k,), teacher names (m,))`` of a config with per-unit activations."""
        def names(given, k):
            given = self.activation if given is None else given
            return list(given) if isinstance(given, list) else [given] * k
        return names(self.student.activation, self.student_k), names(self.teacher.activation, self.teacher.k)

    @property
    def student_k(self) -> int:
        return self.student.k if self.student.k is not None else self.teacher.k

    def build_potential(self):
        """The :class:`~earnshaw.potentials.Potential` (radial potentials get ``d = teacher.d`` unless given)."""
        params = dict(self.potential_params)
        if self.potential in RADIAL_BUILDERS and "d" not in params and self.potential != "gaussian":
            params["d"] = self.teacher.d
        if self.potential_options and self.potential in RADIAL_BUILDERS:
            raise ValueError("only an activation's potential takes options (method, order, tol, terms, radius)")
        if self.mixed:
            # potential_options apply to each activation's own potential; their order also to the mixed pairs
            student, teacher = self.unit_activations()
            opts = dict(self.potential_options)
            return mixed_potential([potential(n, **opts) for n in student], [potential(n, **opts) for n in teacher],
                                   order=opts.get("order"))
        return potential(self.potential_name, **params, **self.potential_options)

    def axes(self) -> List[str]:
        """Grid axis paths, in config order."""
        return list(self.grid)

    def cell_dict(self) -> dict:
        """The config of one cell as plain JSON data (no grid, no name): what its results depend on."""
        data = self.model_dump(mode="json", exclude={"grid", "name"})
        for path in _ADDED_LATER:  # unset, they drop out: configs written before them keep their cell ids
            *parents, key = path
            table = data
            for part in parents:
                table = table[part]
            if table.get(key) is None or table.get(key) == {}:
                table.pop(key, None)
        return data


#: Optional fields added after cell ids were first published (biases, anisotropic inputs, potential options,
#: per-unit activations).
_ADDED_LATER = (("input_mean",), ("input_cov",), ("teacher", "bias_scale"), ("teacher", "bias"),
                ("student", "bias_scale"), ("potential_options",), ("teacher", "activation"),
                ("student", "activation"))


# --- errors --------------------------------------------------------------------------------------------------

_CONSTRAINTS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _fields_at(loc) -> Optional[List[str]]:
    """Field names of the model at ``loc`` (for 'unknown key' messages)."""
    model = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return list(model.model_fields)


def _message(err: dict) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        valid = f"; valid keys: {', '.join(fields)}" if fields else ""
        return f"unknown key{valid}"
    if kind == "missing":
        return "required key is missing"
    if kind in _CONSTRAINTS:
        bound = next(iter(ctx.values())) if ctx else "?"
        return f"must be {_CONSTRAINTS[kind]} {bound} (got {got!r})"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    msg = msg.replace("Input should be", "must be")
    return f"{msg} (got {got!r})" if not isinstance(got, dict) else msg


def _path(loc) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            # union members show up as extra loc entries (e.g. 'int', 'float'); drop them
            if p in ("bool", "int", "float", "str") and parts:
                continue
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _format(error: ValidationError, prefix: str = "") -> List[str]:
    lines = []
    for err in error.errors():
        msg = _message(err)
        loc = _path(err["loc"])
        # model-level validators report the field inside the message ("options.lr: ..."): join the paths
        if msg.split(":", 1)[0].replace(".", "").replace("_", "").isalnum() and ":" in msg.split(" ", 1)[0]:
            field, rest = msg.split(":", 1)
            loc = f"{loc}.{field}" if loc else field
            msg = rest.strip()
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "config")
        lines.append(f"{where}: {msg}")
    return list(dict.fromkeys(lines))


# --- loading ---------------------------------------------------------------------------------------------------

def _set_path(data: dict, path: str, value) -> dict:
    """A copy of ``data`` with the dotted ``path`` set to ``value``."""
    out = json.loads(json.dumps(data))
    node = out
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"grid.{path}: {p} is not a table")
    node[parts[-1]] = value
    return out


def _check_axis(path: str):
    parts = path.split(".")
    if parts[0] in _NOT_GRIDDABLE:
        raise ConfigError(f"grid.{path}: {parts[0]} cannot be a grid axis")
    if parts[0] not in ExperimentConfig.model_fields:
        raise ConfigError(f"grid.{path}: unknown key {parts[0]!r}; valid: "
                          + ", ".join(k for k in ExperimentConfig.model_fields if k not in _NOT_GRIDDABLE))
    if parts[:2] == ["algorithm", "options"] or parts[0] == "potential_params":
        return  # checked when the cells are validated
    fields = _fields_at(tuple(parts[:-1])) if len(parts) > 1 else list(ExperimentConfig.model_fields)
    if fields is None or parts[-1] not in fields or len(parts) > 2:
        raise ConfigError(f"grid.{path}: not a setting of the config"
                          + (f"; valid keys of {'.'.join(parts[:-1])}: {', '.join(fields)}" if fields else ""))


def parse_config(data: dict) -> ExperimentConfig:
    """Validate a config given as a dict (as parsed from TOML); raise :class:`ConfigError` naming each field.

    The grid is checked too: each axis must name a setting, hold a non-empty list, and each of its values
    must give a valid config (errors read ``grid.teacher.d[1]: must be >= 1 (got -2)``).
    """
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("\n".join(_format(err))) from None
    base = cfg.model_dump(mode="json", exclude={"grid"})
    problems = []
    for path, values in cfg.grid.items():
        try:
            _check_axis(path)
        except ConfigError as err:
            problems.append(str(err))
            continue
        if not values:
            problems.append(f"grid.{path}: needs at least one value")
        if len(set(map(json.dumps, values))) != len(values):
            problems.append(f"grid.{path}: repeated values {values}")
        for i, value in enumerate(values):
            try:
                ExperimentConfig.model_validate(_set_path(base, path, value))
            except ValidationError as err:
                problems.extend(f"grid.{path}[{i}]: " + line.split(": ", 1)[1] for line in _format(err))
            except ConfigError as err:
                problems.append(str(err))
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))
    return cfg


def load_config(path) -> ExperimentConfig:
    """Read and validate a TOML config file; raise :class:`ConfigError` naming each bad field."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    teacher = data.get("teacher")
    if isinstance(teacher, dict) and isinstance(teacher.get("w"), str) and teacher["w"] not in ("random", "identity"):
        # a teacher file is named relative to the config; the run folder keeps its absolute path
        teacher["w"] = str((path.parent / teacher["w"]).resolve())
    return parse_config(data)


def canonical_json(obj) -> str:
    """Key-sorted, whitespace-free JSON: the same data always gives the same string."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def stable_hash(obj) -> str:
    """sha256 of :func:`canonical_json` (hex); stable across processes, machines and versions of Python."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def expand_grid(cfg: ExperimentConfig) -> List[tuple]:
    """The cells of a sweep in a deterministic order (the last axis varies fastest).

    Returns:
      A list of ``(params, cell_cfg)``: ``params`` maps each axis path to its value in the cell,
      ``cell_cfg`` is the full :class:`ExperimentConfig` of the cell with no grid.
    """
    base = cfg.model_dump(mode="json", exclude={"grid"})
    axes = cfg.axes()
    cells = []
    for combo in itertools.product(*(cfg.grid[a] for a in axes)):
        data = base
        for path, value in zip(axes, combo):
            data = _set_path(data, path, value)
        try:
            cell = ExperimentConfig.model_validate(data)
        except ValidationError as err:
            where = ", ".join(f"{a}={v!r}" for a, v in zip(axes, combo))
            raise ConfigError(f"the grid cell {where} is invalid:\n" + "\n".join(_format(err))) from None
        cells.append((dict(zip(axes, combo)), cell))
    return cells


def to_toml(cfg: ExperimentConfig) -> str:
    """The config as TOML text (defaults filled in), which :func:`load_config` reads back to an equal config."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)
