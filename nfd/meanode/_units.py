"""Residual units of the hidden-width ResNet: defined in :mod:`nfd._units` (below
:mod:`nfd._model`, which validates a :class:`~nfd.MeanODEResNet`'s unit), re-exported here."""

from .._units import MLP as MLP
from .._units import UNITS as UNITS
from .._units import Unit as Unit
from .._units import get_unit as get_unit

__all__ = ["Unit", "MLP", "get_unit", "UNITS"]
