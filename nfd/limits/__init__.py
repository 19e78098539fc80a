"""Infinite-width limit solvers (one module per family; each appends its exports here)."""
from ._nfd import ParticleSolution as ParticleSolution
from ._nfd import solve_particles as solve_particles
from ._nfd import solve_particles_network as solve_particles_network
from ._init_sde import CouplingError as CouplingError
from ._init_sde import InitKernels as InitKernels
from ._init_sde import InitParticles as InitParticles
from ._init_sde import coupling_error as coupling_error
from ._init_sde import discrete_init_kernels as discrete_init_kernels
from ._init_sde import gaussian_init_kernels as gaussian_init_kernels
from ._init_sde import init_sde_particles as init_sde_particles
from ._gamma_c import GammaCResult as GammaCResult
from ._gamma_c import gamma_c_network as gamma_c_network
from ._gamma_c import solve_gamma_c as solve_gamma_c
from ._gamma_c_infinite import gamma_c_infinite_network as gamma_c_infinite_network
from ._gamma_c_infinite import solve_gamma_c_infinite as solve_gamma_c_infinite
from ._init_sde import coupling_depth_error as coupling_depth_error
