"""One description of a residual network and its parameterisation.

Every finite simulator and every limit solver reads its multipliers and learning rates
from a :class:`ResNet`, so a finite network and its limit cannot silently disagree.

The network (NFD paper Eq. 1, 6, 9; ``n`` = width, ``L`` = depth, ``τ = T/L``), with all
weights U (n×d), W_ℓ (n×n), v (n) drawn i.i.d. N(0, 1):

* ``block="pre"`` (Eq. 1)::

      h_0 = U x / √d,   h_ℓ = h_{ℓ-1} + (b/√n) W_ℓ φ(h_{ℓ-1}),   f = (α/√n) vᵀ h_L

* ``block="post"`` (Eq. 9)::

      h_0 = φ(U x / √d),   h_ℓ = h_{ℓ-1} + b φ(W_ℓ h_{ℓ-1} / √n)

* ``block="post_ms"`` (Tensor Programs VI §6.3, Appendix E; MS(a) = a − mean_i(a_i))::

      h_0 = U x / √d,   h_ℓ = h_{ℓ-1} + b MS(φ(W_ℓ h_{ℓ-1} / √n))

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
from ._units import get_unit
from ._validate import check_bool, check_choice, check_float, check_groups, check_int, check_positive_float

__all__ = ["ResNet", "BLOCKS", "PARAMETERIZATIONS", "LOSSES", "PARAMETER_GROUPS"]

BLOCKS = ("pre", "post", "two_layer", "post_ms")
PARAMETERIZATIONS = ("depth_mup", "mup", "ntk", "sp")
LOSSES = ("mse", "logistic")
PARAMETER_GROUPS = ("input", "hidden", "output")


def _check_pos_int(name, v):
    return check_int(name, v, min=1)  # Python and NumPy integers alike; bool refused


def _check_pos_float(name, v):
    check_positive_float(name, v)


@dataclasses.dataclass(frozen=True)
class ResNet:
    """Immutable description of a depth-L residual network and how it is trained.

    Args:
        depth: number of residual blocks L (≥ 1).
        input_dim: input dimension d.
        width: n, or ``None`` for the infinite-width limit.
        activation: name or :class:`~nfd.Activation`.
        T: time horizon; the branch multiplier is √(T/L) under depth-μP.
        block: ``"pre"``, ``"post"``, ``"two_layer"`` or ``"post_ms"`` (mean-subtracted post block).
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
    block: Literal["pre", "post", "two_layer", "post_ms"] = "pre"
    parameterization: Literal["depth_mup", "mup", "ntk", "sp"] = "depth_mup"
    lr: float = 0.1
    alpha: float | None = None
    depth_aware_lr: bool = False
    frozen: tuple[str, ...] = ()
    loss: Literal["mse", "logistic"] = "mse"

    def __post_init__(self):
        object.__setattr__(self, "depth", _check_pos_int("depth", self.depth))
        object.__setattr__(self, "input_dim", _check_pos_int("input_dim", self.input_dim))
        if self.width is not None:
            object.__setattr__(self, "width", _check_pos_int("width", self.width))
        object.__setattr__(self, "activation", get_activation(self.activation))
        _check_pos_float("T", self.T)
        check_choice("block", self.block, BLOCKS)
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        object.__setattr__(self, "lr", check_float("lr", self.lr, sign="non-negative"))
        if self.alpha is not None:
            _check_pos_float("alpha", self.alpha)
        object.__setattr__(self, "frozen", check_groups("frozen", self.frozen, PARAMETER_GROUPS))
        check_choice("loss", self.loss, LOSSES)
        check_bool("depth_aware_lr", self.depth_aware_lr)
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


# ---- ResNets with hidden width M (Chizat 2025, "The hidden width of deep ResNets") --------


@dataclasses.dataclass(frozen=True)
class MeanODEResNet:
    """Immutable description of a ResNet with embedding dimension D and M units per block,
    and of its training by full-batch GD (hidden-width-neural-mean-ode.txt, Eq. 1, 5, 24, 25).

    Forward pass (``depth`` = L, ``hidden`` = M; ``None`` for the L → ∞ Neural Mean ODE)::

        h⁰ = x ∈ R^D,   hˡ = hˡ⁻¹ + α/(LM) Σ_{j≤M} φ(hˡ⁻¹, (u^{j,ℓ}, v^{j,ℓ})),

    with the unit φ = ``unit`` (default v ρ(uᵀx/D)), initial entries u ~ N(0, σ_u²),
    v ~ N(0, σ_v²) i.i.d., loss loss_i(h) = ½‖h − y_i‖²/D (the "RMS" square loss, whose
    gradient has the Θ(1/D) scale assumed in §4), objective (1/n) Σ_i loss_i, and GD

        u ← u − (L M η_u / α²) ∇_u L̂,      v ← v − (L M η_v / α²) ∇_v L̂.

    Defaults are the setting of §2.4: α = 1, σ_u = σ_v = √D, η_u = η_v = D.  The limit
    (Eq. 10–14) is the same with (1/(LM)) Σ replaced by E over the parameter process Z(s).
    §4's residual scale σ_v/(LM) is reached with :meth:`balanced`.

    Args:
        dim: embedding dimension D.
        depth: L, or ``None`` for the limit.
        hidden: M, or ``None`` (the limit does not depend on M).
        unit: ``"mlp"`` or an :class:`nfd.meanode.Unit`.
        activation: ρ, name or :class:`~nfd.Activation` (default ``"tanh"``).
        alpha: α > 0, the residual multiplier of §2–3 (α → ∞ is the lazy-ODE regime).
        sigma_u, sigma_v: initial standard deviations (default √D).
        lr_u, lr_v: η_u, η_v ≥ 0 (default D).

    Example:
        >>> net = MeanODEResNet(dim=10, depth=100, hidden=4)
        >>> net.residual_scale, net.gd_rates == (10 * 400.0, 10 * 400.0)
        (0.0025, True)
    """

    dim: int
    depth: int | None = None
    hidden: int | None = None
    unit: object = "mlp"
    activation: Activation | str = "tanh"
    alpha: float = 1.0
    sigma_u: float | None = None
    sigma_v: float | None = None
    lr_u: float | None = None
    lr_v: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "dim", _check_pos_int("dim", self.dim))
        if self.depth is not None:
            object.__setattr__(self, "depth", _check_pos_int("depth", self.depth))
        if self.hidden is not None:
            object.__setattr__(self, "hidden", _check_pos_int("hidden", self.hidden))
        object.__setattr__(self, "unit", get_unit(self.unit))
        object.__setattr__(self, "activation", get_activation(self.activation))
        _check_pos_float("alpha", self.alpha)
        object.__setattr__(self, "alpha", float(self.alpha))
        root = math.sqrt(self.dim)
        for name in ("sigma_u", "sigma_v"):
            val = getattr(self, name)
            val = root if val is None else val
            try:
                fv = float(val)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a non-negative number, got {val!r}") from None
            if not (fv >= 0 and math.isfinite(fv)):
                raise ValueError(f"{name} must be a non-negative finite number, got {val!r}")
            object.__setattr__(self, name, fv)
        for name in ("lr_u", "lr_v"):
            val = getattr(self, name)
            val = float(self.dim) if val is None else val
            try:
                fv = float(val)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a non-negative number, got {val!r}") from None
            if not (fv >= 0 and math.isfinite(fv)):
                raise ValueError(f"{name} must be a non-negative finite number, got {val!r}")
            object.__setattr__(self, name, fv)

    @classmethod
    def balanced(cls, dim: int, scale: float, *, eta0: float = 1.0, **kw) -> "MeanODEResNet":
        """§4.4 / Theorem 3 parameterisation: σ_u = √D, σ_v = scale·√D, α = 1 and the
        "balanced contributions" rates η_u = η0·D·min(1, scale⁻²), η_v = η0·D.

        ``scale`` ≪ 1: semi-complete, ``scale`` = Θ(1): complete, ``scale`` ≫ 1: lazy ODE.
        """
        try:
            a = float(scale)
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a non-negative number, got {scale!r}") from None
        if not (a >= 0 and math.isfinite(a)):
            raise ValueError(f"scale must be a non-negative finite number, got {scale!r}")
        _check_pos_float("eta0", eta0)
        lr_u = eta0 * dim * (1.0 if a <= 1.0 else a**-2)
        return cls(dim=dim, sigma_u=math.sqrt(dim), sigma_v=a * math.sqrt(dim), lr_u=lr_u,
                   lr_v=eta0 * dim, alpha=kw.pop("alpha", 1.0), **kw)

    @property
    def param_sizes(self) -> tuple[int, int]:
        """(p_u, p_v), the sizes of a unit's two parameter groups."""
        return tuple(int(s) for s in self.unit.sizes(self.dim))

    @property
    def is_limit(self) -> bool:
        return self.depth is None

    @property
    def residual_scale(self) -> float:
        """α/(LM), the multiplier of the sum over units in each block (finite nets only)."""
        if self.depth is None or self.hidden is None:
            raise ValueError("residual_scale needs finite depth and hidden width")
        return self.alpha / (self.depth * self.hidden)

    @property
    def gd_rates(self) -> tuple[float, float]:
        """(L M η_u/α², L M η_v/α²): the actual GD step sizes of the finite network (Eq. 5, 25)."""
        if self.depth is None or self.hidden is None:
            raise ValueError("gd_rates needs finite depth and hidden width")
        c = self.depth * self.hidden / self.alpha**2
        return (c * self.lr_u, c * self.lr_v)

    def replace(self, **changes) -> "MeanODEResNet":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)
