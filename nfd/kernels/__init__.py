"""Kernel regime of √(T/L)-branch ResNets and the exactly solvable DMFT cases.

* :func:`nngp_kernel` / :func:`nngp_kernel_path`: the infinite-depth NNGP kernel (NFD Prop. 3).
* :func:`gp_posterior`, :func:`kernel_regression`, :func:`rkhs_norm`, :func:`min_eigenvalue_path`,
  :func:`rkhs_norm_path`: GP regression and the Prop. 4/5 checks.
* :func:`lazy_kernels`, :func:`lazy_dynamics`: the lazy-limit DMFT (NTK and predictor dynamics).
* :func:`linear_one_step`: feature kernels of a linear ResNet after one SGD step.
* :func:`error_decomposition`: variance / mean-bias / depth error of finite networks.
"""

from ._error_decomposition import ErrorDecomposition as ErrorDecomposition
from ._error_decomposition import PowerLawFit as PowerLawFit
from ._error_decomposition import error_decomposition as error_decomposition
from ._error_decomposition import fit_power_law as fit_power_law
from ._lazy import LazyDynamics as LazyDynamics
from ._lazy import LazyKernels as LazyKernels
from ._lazy import lazy_dynamics as lazy_dynamics
from ._lazy import lazy_kernels as lazy_kernels
from ._linear_one_step import LinearOneStep as LinearOneStep
from ._linear_one_step import linear_one_step as linear_one_step
from ._linear_one_step import paper_eq93 as paper_eq93
from ._nngp import nngp_kernel as nngp_kernel
from ._nngp import nngp_kernel_path as nngp_kernel_path
from ._regression import GPPosterior as GPPosterior
from ._regression import gp_posterior as gp_posterior
from ._regression import kernel_regression as kernel_regression
from ._regression import min_eigenvalue_path as min_eigenvalue_path
from ._regression import rkhs_norm as rkhs_norm
from ._regression import rkhs_norm_path as rkhs_norm_path
