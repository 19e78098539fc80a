"""Memory checks of runs spread over devices (nfd._memory.check_device_memory) and the per-device
estimates that feed them.  Accelerators are stood in for by objects with the two attributes the
check reads (``platform``, ``memory_stats``): this machine has none, and the rule is arithmetic."""

import types

import numpy as np
import pytest

import nfd
from nfd._errors import MemoryEstimateError
from nfd._memory import check_device_memory
from nfd.limits import estimate_particle_memory
from nfd.meanode._finite import train_bytes


def _gpu(limit):
    return types.SimpleNamespace(platform="gpu", memory_stats=lambda: {"bytes_limit": limit})


def test_accelerators_check_each_device_share_against_its_own_limit():
    gpus = [_gpu(1000)] * 4
    check_device_memory(3600, 900, devices=gpus, what="run", hint="h")  # 900 ≤ 1000 per device
    with pytest.raises(MemoryEstimateError, match=r"run \(per gpu device\)") as e:
        check_device_memory(3600, 1100, devices=gpus, what="run", hint="h")
    assert e.value.limit_bytes == 1000 and e.value.estimate_bytes == 1100
    # max_memory is then a per-device limit
    check_device_memory(3600, 1100, devices=gpus, what="run", hint="h", limit_bytes=1200)
    # one accelerator and no per-device figure: the whole run must fit it
    with pytest.raises(MemoryEstimateError):
        check_device_memory(3600, devices=[_gpu(1000)], what="run", hint="h")


def test_host_devices_share_the_machine_so_the_total_is_checked():
    cpus = [types.SimpleNamespace(platform="cpu", memory_stats=lambda: {"bytes_limit": 10})] * 4
    check_device_memory(3600, 900, devices=cpus, what="run", hint="h", limit_bytes=4000)
    with pytest.raises(MemoryEstimateError, match="run needs"):
        check_device_memory(3600, 900, devices=cpus, what="run", hint="h", limit_bytes=3000)
    # no devices given: JAX's default device (the CPU here)
    with pytest.raises(MemoryEstimateError):
        check_device_memory(3600, 900, what="run", hint="h", limit_bytes=3000)


def test_per_device_estimates_split_the_particle_part():
    kw = dict(L=50, P=4096, n=16, D=3, p=8, steps=100, n_forward=2, dtype=np.float32)
    one, four = train_bytes(**kw), train_bytes(**kw, devices=4)
    item = 4
    split = item * (6 * 50 * 4096 * 8 + 4 * 50 * 16 * 4096)  # parameters and particle activations
    assert one - four == split - split // 4  # only the particle part shrinks, exactly by 4
    total = estimate_particle_memory(particles=2**16, depth=32, samples=64, input_dim=5)
    per = estimate_particle_memory(particles=2**16, depth=32, samples=64, input_dim=5, devices=4, per_device=True)
    assert total / 4 < per < total / 2


def test_solvers_refuse_runs_over_the_limit_before_work():
    X = np.random.default_rng(0).normal(size=(4, 3))
    Y = X[:, 0]
    with pytest.raises(MemoryEstimateError, match="Mean ODE"):
        nfd.solve_mean_ode(X, X, steps=2, grid=8, particles=64, max_memory=1000, devices="all")  # Y in R^D
    with pytest.raises(MemoryEstimateError, match="simulate"):
        nfd.simulate(X, Y, width=64, depth=4, max_memory=1000, devices="all")
    with pytest.raises(MemoryEstimateError, match="solve_particles"):
        nfd.solve(X, Y, depth=4, particles=64, max_memory=1000, devices="all")
