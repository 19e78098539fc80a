"""nfd: infinite width-and-depth limits of residual networks, and the finite networks
that approach them."""

from ._cache import _enable_on_import

_enable_on_import()  # JAX's persistent compilation cache, per user (opt out: NFD_NO_COMPILATION_CACHE=1)

from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._activations import get_activation as get_activation
from ._errors import DivergenceError as DivergenceError
from ._errors import FileFormatError as FileFormatError
from ._errors import MemoryEstimateError as MemoryEstimateError
from ._errors import SingularCovarianceError as SingularCovarianceError
from ._model import ResNet as ResNet
from ._solve import solve as solve
from .finite import SimulationResult as SimulationResult
from .finite import simulate as simulate
from .finite import simulate_network as simulate_network

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

try:  # the version is set in one place, pyproject.toml, and read from the installed metadata
    __version__ = _version("nfd")
except _PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
from ._results import Status as Status
from ._model import MeanODEResNet as MeanODEResNet
from .meanode import simulate_resnet as simulate_resnet
from .meanode import solve_mean_ode as solve_mean_ode
from . import kernels as kernels
from .kernels import nngp_kernel as nngp_kernel
from .limits import ParticleSolution as ParticleSolution
from .limits import coupling_error as coupling_error
from .limits import discrete_init_kernels as discrete_init_kernels
from .limits import gaussian_init_kernels as gaussian_init_kernels
from .limits import init_sde_particles as init_sde_particles
from ._grad import LimitGradient as LimitGradient
from ._grad import limit_loss_and_grad as limit_loss_and_grad
from ._grad import limit_loss_fn as limit_loss_fn
from ._grad import optimal_lr as optimal_lr
from ._cache import compilation_cache_dir as compilation_cache_dir
from ._cache import disable_compilation_cache as disable_compilation_cache
from ._cache import enable_compilation_cache as enable_compilation_cache
from ._io import load as load
from ._io import save as save
from .limits import ParticleProblem as ParticleProblem
from .limits import particle_problem as particle_problem
from ._paired import PairedDifference as PairedDifference
from ._paired import paired_difference as paired_difference
from .limits import ParticleLimit as ParticleLimit
