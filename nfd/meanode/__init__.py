"""The Neural Mean ODE family: ResNets with embedding dimension D and M units per block
(Chizat 2025), their large-depth limit (the Neural Mean ODE) and its lazy linearisation
(the Neural Tangent ODE)."""

from ._finite import ResNetResult as ResNetResult
from ._finite import simulate_resnet as simulate_resnet
from ._finite import simulate_resnet_network as simulate_resnet_network
from ._units import MLP as MLP
from ._units import Unit as Unit
from ._solve import COUPLINGS as COUPLINGS
from ._solve import SAMPLERS as SAMPLERS
from ._solve import MeanODEResult as MeanODEResult
from ._solve import sample_particles as sample_particles
from ._solve import solve_mean_ode as solve_mean_ode
from ._solve import solve_mean_ode_network as solve_mean_ode_network
