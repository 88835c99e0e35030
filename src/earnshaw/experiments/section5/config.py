"""The Section 5 config (pydantic), its presets, and the paper's numbers."""
from __future__ import annotations

from typing import Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from earnshaw.activations import activation
from earnshaw.experiments.section5.deep import REDUCTIONS, check_packable, effective_step

__all__ = ["Section5Config", "ReproduceConfig", "PRESETS", "TARGETS", "PAPER_TABLE2", "PAPER_FIGURE1_FINAL"]

#: The paper's Table 2 (test error), ``PAPER_TABLE2[depth][width]``.
PAPER_TABLE2 = {
    2: {5: 0.0015, 10: 0.0017, 20: 0.0018, 40: 0.0019},
    3: {5: 0.0033, 10: 0.0264, 20: 0.1503, 40: 0.2362},
    5: {5: 0.0036, 10: 0.0579, 20: 0.2400, 40: 0.4397},
    9: {5: 0.0085, 10: 0.1662, 20: 0.4171, 40: 0.6071},
    17: {5: 0.0845, 10: 0.3862, 20: 0.4934, 40: 0.5777},
}

#: What the paper says of Figure 1 (depth 2): error "under 0.002" for widths up to 125.
PAPER_FIGURE1_FINAL = 0.002

TARGETS = ("table2", "figure1")


class Section5Config(BaseModel):
    """One Section 5 experiment: a grid of (depth, width) cells, each with ``seeds`` runs. Unknown keys are refused.

    Attributes:
      name: preset name, recorded in the run folder (may be given as the first positional argument).
      depths, widths: the grid (tuples of ints; depth >= 2).
      seeds: runs per cell (vmapped together).
      d: input dimension. n_train, n_test: samples per seed.
      lr: GD step on the loss with the given ``reduction``.
      reduction: ``"sum"`` or ``"mean"`` (see :func:`earnshaw.experiments.section5.deep.effective_step`).
      steps: GD iterations per run. chunk: steps per compiled ``lax.scan`` call;
        progress, divergence checks, test errors and checkpoints happen between chunks.
      activation: ``"sigmoid_pm1"`` or ``"tanh"`` (any inner-product activation name works).
      seed: root seed of the whole grid.
      packed: train all widths of a depth as one program, students zero-padded to the widest (for
        accelerators; needs ``s(0) = 0``, as sigmoid_pm1 and tanh have). Results equal the unpacked run's
        to float32 rounding.

    Example::

        Section5Config("tiny", depths=(2,), widths=(5, 10), seeds=2, steps=300, chunk=100)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    depths: Tuple[int, ...]
    widths: Tuple[int, ...]
    seeds: int = Field(5, ge=1)
    d: int = Field(10, ge=1)
    n_train: int = Field(10_000, ge=1)
    n_test: int = Field(10_000, ge=1)
    lr: float = Field(1e-5, gt=0, allow_inf_nan=False)
    reduction: str = "sum"
    steps: int = Field(1_000_000, ge=1)
    chunk: int = Field(10_000, ge=1)
    activation: str = "sigmoid_pm1"
    seed: int = Field(0, ge=0)
    packed: bool = False

    def __init__(self, name: Optional[str] = None, /, **data):
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("depths")
    @classmethod
    def _depths(cls, v):
        if not v or any(x < 2 for x in v):
            raise ValueError(f"depths must be a non-empty list of integers >= 2, got {v}")
        return v

    @field_validator("widths")
    @classmethod
    def _widths(cls, v):
        if not v or any(x < 1 for x in v):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {v}")
        return v

    @field_validator("reduction")
    @classmethod
    def _reduction(cls, v):
        if v not in REDUCTIONS:
            raise ValueError(f"unknown reduction {v!r}; valid: {', '.join(REDUCTIONS)}")
        return v

    @field_validator("activation")
    @classmethod
    def _activation(cls, v):
        activation(v)  # raises a ValueError listing the valid names
        return v

    @model_validator(mode="after")
    def _packable(self):
        if self.packed:
            check_packable(self.activation)
        return self

    @property
    def effective_step(self) -> float:
        """The equivalent step on the mean loss (``lr * n_train`` for ``reduction="sum"``)."""
        return effective_step(self.lr, self.reduction, self.n_train)

    @property
    def cells(self) -> list:
        """``[(depth, width), ...]`` in run order."""
        return [(dp, w) for dp in self.depths for w in self.widths]

    def replace(self, **changes) -> "Section5Config":
        """A copy with some fields changed (``None`` values are ignored), validated again."""
        return Section5Config.model_validate({**self.model_dump(), **{k: v for k, v in changes.items()
                                                                       if v is not None}})

    def to_dict(self) -> dict:
        """Plain data (lists for the grid)."""
        return self.model_dump(mode="json")


class ReproduceConfig(BaseModel):
    """What a ``earnshaw reproduce`` run folder holds: the target and its experiment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    config: Section5Config

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        if v not in TARGETS:
            raise ValueError(f"unknown target {v!r}; valid targets: {', '.join(TARGETS)}")
        return v


_T2 = dict(depths=(2, 3, 5, 9, 17), widths=(5, 10, 20, 40))
_F1 = dict(depths=(2,), widths=(5, 10, 20, 40, 125))

#: Presets per target. ``full`` is the paper's protocol (10^6 steps); ``quick`` takes minutes and
#: shows the qualitative pattern; ``ci`` is the smallest run that still shows it (used by the tests).
PRESETS = {
    "table2": {
        "full": Section5Config("table2-full", **_T2),
        # quick: 2,000 samples, a 10x larger mean-loss step (lr*N = 0.2 ... as lr=1e-4 with N=2e3),
        # 4,000 steps. Enough for the ordering (depth 2 small, error grows with width at depth >= 3).
        "quick": Section5Config("table2-quick", **_T2, seeds=3, n_train=2_000, n_test=2_000, lr=1e-4,
                                steps=4_000, chunk=1_000),
        "ci": Section5Config("table2-ci", depths=(2, 5), widths=(5, 20, 40), seeds=2, n_train=1_000,
                             n_test=1_000, lr=4e-4, steps=1_000, chunk=500),
    },
    "figure1": {
        "full": Section5Config("figure1-full", **_F1),
        "quick": Section5Config("figure1-quick", **_F1, seeds=3, n_train=2_000, n_test=2_000, lr=1e-4,
                                steps=5_000, chunk=250),
        "ci": Section5Config("figure1-ci", depths=(2,), widths=(5, 20), seeds=2, n_train=1_000, n_test=1_000,
                             lr=2e-4, steps=1_000, chunk=250),
    },
}
