"""Finite residual networks: the ground truth every limit is compared with."""

from ._simulate import SimulationResult as SimulationResult
from ._simulate import simulate as simulate
from ._simulate import simulate_network as simulate_network
from ._simulate import SimulationProblem as SimulationProblem
from ._simulate import simulation_problem as simulation_problem
