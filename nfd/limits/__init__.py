"""Infinite-width limit solvers (one module per family; each appends its exports here)."""
from ._nfd import ParticleSolution as ParticleSolution
from ._nfd import solve_particles as solve_particles
from ._nfd import solve_particles_network as solve_particles_network
