"""One description of a residual network and its parameterisation.

Every finite simulator and every limit solver reads its multipliers and learning rates
from a :class:`ResNet`, so a finite network and its limit cannot silently disagree.

The network (NFD paper Eq. 1, 6, 9; ``n`` = width, ``L`` = depth, ``τ = T/L``), with all
weights U (n×d), W_ℓ (n×n), v (n) drawn i.i.d. N(0, 1):

* ``block="pre"`` (Eq. 1)::

      h_0 = U x / √d,   h_ℓ = h_{ℓ-1} + (b/√n) W_ℓ φ(h_{ℓ-1}),   f = (α/√n) vᵀ h_L

* ``block="post"`` (Eq. 9)::

      h_0 = φ(U x / √d),   h_ℓ = h_{ℓ-1} + b φ(W_ℓ h_{ℓ-1} / √n)

* ``block="two_layer"`` (Eq. 6)::

      x_ℓ = W_{ℓ,1} h_{ℓ-1} / √n,   h_ℓ = h_{ℓ-1} + (b/√n) W_{ℓ,2} φ(x_ℓ)

The branch multiplier ``b`` and output scale ``α`` and the SGD learning rates per
parameter group come from ``parameterization``:

============  ========  =========  ==============================================
name          b         α          learning rate (input, hidden, output)
============  ========  =========  ==============================================
depth_mup     √(T/L)    1/√n       η_c·n on all (μP with the depth-μP branch)
mup           1         1/√n       η_c·n on all
ntk           √(T/L)    1          η_c on all (kernel regime, α = 1)
sp            1         1          η_c·d, η_c·n, η_c·n: plain SGD with global rate η_c
                                   on a network initialised W ~ N(0, 1/fan_in)
============  ========  =========  ==============================================

``depth_aware_lr=True`` (Eq. 8) multiplies the first-layer rate of a two-layer block by √L.
``alpha`` may be set explicitly to override the table.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from ._activations import Activation, get_activation

__all__ = ["ResNet", "BLOCKS", "PARAMETERIZATIONS", "LOSSES", "PARAMETER_GROUPS"]

BLOCKS = ("pre", "post", "two_layer")
PARAMETERIZATIONS = ("depth_mup", "mup", "ntk", "sp")
LOSSES = ("mse", "logistic")
PARAMETER_GROUPS = ("input", "hidden", "output")


def _check_pos_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _check_pos_float(name, v):
    try:
        fv = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {v!r}") from None
    if not (fv > 0 and math.isfinite(fv)):
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")


@dataclasses.dataclass(frozen=True)
class ResNet:
    """Immutable description of a depth-L residual network and how it is trained.

    Args:
        depth: number of residual blocks L (≥ 1).
        input_dim: input dimension d.
        width: n, or ``None`` for the infinite-width limit.
        activation: name or :class:`~nfd.Activation`.
        T: time horizon; the branch multiplier is √(T/L) under depth-μP.
        block: ``"pre"``, ``"post"`` or ``"two_layer"``.
        parameterization: ``"depth_mup"``, ``"mup"``, ``"ntk"`` or ``"sp"``.
        lr: η_c, the width- (and depth-) independent learning-rate constant.
        alpha: output scale; ``None`` takes it from the parameterisation.
        depth_aware_lr: multiply the first-layer rate of two-layer blocks by √L (Eq. 8).
        frozen: parameter groups that do not train, from ``("input", "hidden", "output")``.
        loss: ``"mse"`` (½(f−y)²) or ``"logistic"`` (labels in {0, 1}).

    Example:
        >>> net = ResNet(depth=16, input_dim=3, width=256, activation="tanh", lr=0.5)
        >>> round(net.branch, 4), net.lr_hidden == 0.5 * 256
        (0.25, True)
    """

    depth: int
    input_dim: int
    width: int | None = None
    activation: Activation | str = "relu"
    T: float = 1.0
    block: Literal["pre", "post", "two_layer"] = "pre"
    parameterization: Literal["depth_mup", "mup", "ntk", "sp"] = "depth_mup"
    lr: float = 0.1
    alpha: float | None = None
    depth_aware_lr: bool = False
    frozen: tuple[str, ...] = ()
    loss: Literal["mse", "logistic"] = "mse"

    def __post_init__(self):
        _check_pos_int("depth", self.depth)
        _check_pos_int("input_dim", self.input_dim)
        if self.width is not None:
            _check_pos_int("width", self.width)
        object.__setattr__(self, "activation", get_activation(self.activation))
        _check_pos_float("T", self.T)
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}"
            )
        try:
            lr = float(self.lr)
        except (TypeError, ValueError):
            raise ValueError(f"lr must be a non-negative number, got {self.lr!r}") from None
        if not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a non-negative finite number, got {self.lr!r}")
        object.__setattr__(self, "lr", lr)
        if self.alpha is not None:
            _check_pos_float("alpha", self.alpha)
        if isinstance(self.frozen, str):
            object.__setattr__(self, "frozen", (self.frozen,))
        frozen = tuple(sorted(set(self.frozen)))
        bad = [f for f in frozen if f not in PARAMETER_GROUPS]
        if bad:
            raise ValueError(f"frozen: unknown parameter groups {bad}; choose from {PARAMETER_GROUPS}")
        object.__setattr__(self, "frozen", frozen)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.depth_aware_lr and self.block != "two_layer":
            raise ValueError("depth_aware_lr applies to block='two_layer' only")
        if self.width is None and self.parameterization in ("mup", "sp") and self.alpha is None:
            pass  # limits of these are provided by no solver; solvers check what they support

    # ---- multipliers -------------------------------------------------------------------
    @property
    def tau(self) -> float:
        """τ = T / L."""
        return self.T / self.depth

    @property
    def branch(self) -> float:
        """Branch multiplier b (√(T/L) under depth-μP and ntk, 1 under μP and SP)."""
        if self.parameterization in ("depth_mup", "ntk"):
            return math.sqrt(self.T / self.depth)
        return 1.0

    @property
    def feature_learning(self) -> bool:
        """True for the μP family (α = 1/√n), False for kernel-regime parameterisations."""
        return self.parameterization in ("depth_mup", "mup")

    def output_scale(self) -> float:
        """α/√n, the factor in f = (α/√n) vᵀ h_L (needs a finite width)."""
        n = self._need_width()
        return self.alpha_value() / math.sqrt(n)

    def alpha_value(self) -> float:
        if self.alpha is not None:
            return float(self.alpha)
        if self.feature_learning:
            return 1.0 / math.sqrt(self._need_width())
        return 1.0

    def _need_width(self) -> int:
        if self.width is None:
            raise ValueError("this quantity needs a finite width; the ResNet has width=None")
        return self.width

    # ---- learning rates -----------------------------------------------------------------
    def _base_lr(self) -> float:
        if self.parameterization in ("depth_mup", "mup"):
            return self.lr * self._need_width()
        if self.parameterization == "ntk":
            return self.lr
        return self.lr * self._need_width()  # sp

    @property
    def lr_input(self) -> float:
        """SGD rate of U (0 if frozen)."""
        if "input" in self.frozen:
            return 0.0
        if self.parameterization == "sp":
            return self.lr * self.input_dim
        return self._base_lr()

    @property
    def lr_hidden(self) -> float:
        """SGD rate of W_ℓ (of W_{ℓ,2} for two-layer blocks; 0 if frozen)."""
        if "hidden" in self.frozen:
            return 0.0
        return self._base_lr()

    @property
    def lr_hidden_first(self) -> float:
        """SGD rate of W_{ℓ,1} in two-layer blocks (×√L with ``depth_aware_lr``)."""
        if "hidden" in self.frozen:
            return 0.0
        scale = math.sqrt(self.depth) if self.depth_aware_lr else 1.0
        return self._base_lr() * scale

    @property
    def lr_output(self) -> float:
        """SGD rate of v (0 if frozen)."""
        if "output" in self.frozen:
            return 0.0
        return self._base_lr()

    def replace(self, **changes) -> "ResNet":
        """A copy with some fields changed (the object itself is immutable)."""
        return dataclasses.replace(self, **changes)
