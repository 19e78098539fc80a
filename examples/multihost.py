"""Several hosts: one nfd run spread over the devices of several processes with ``jax.distributed``.

JAX runs multi-host programs "multi-controller": the same script runs once per host (process),
every process calls ``jax.distributed.initialize`` with the same coordinator address, and from then
on ``jax.devices()`` lists the devices of all processes.  nfd's ``devices="all"`` then builds its
1-D mesh over every device of every host: ``nfd.simulate`` splits its seeds, ``solve_mean_ode``
its particles (the particle means become all-reduces across hosts), and the results are gathered
back to every process (``jax.experimental.multihost_utils.process_allgather``), so each process
returns the same full result.

This script runs a sharded ``nfd.simulate``, a particle-sharded NFD limit solve (``nfd.solve``,
both backward modes, with a checkpoint written and resumed half-way) and a sharded
``nfd.meanode.solve_mean_ode`` on a small problem, and compares them with the same computations
done by this process alone.

Recipe (N hosts; host 0's address reachable from all; the same command on every host, only
``--process-id`` differs)::

    # on host i = 0 .. N-1 (CPU hosts: --cpu-devices K simulates K devices per process; use
    # --cpu-devices 0 on GPU/TPU hosts to use their accelerators)
    python examples/multihost.py --num-processes N --process-id i --coordinator HOST0:PORT

    # under Slurm (srun) or Open MPI (mpirun), one process per host: the cluster is detected
    srun python examples/multihost.py --auto --cpu-devices 0

    # one machine, N local processes (a free port is picked), 2 CPU devices each:
    python examples/multihost.py --launch-local 2 --out examples/out/multihost.npz

Every process must build the same inputs (here: the same seeded draws); process 0 prints the
comparison and writes ``--out`` (an .npz of the sharded results and the max differences).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_problem(seed: int = 0):
    """(X, Y, X2, Y2): a scalar regression stream for ``nfd.simulate`` and a vector-valued data
    set for the Mean ODE solver; numpy, identical on every process."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(6, 3))
    Y = np.sin(X[:, 0])
    X2 = rng.normal(size=(5, 3))
    Y2 = np.tanh(X2[:, ::-1])
    return X, Y, X2, Y2


SIM_KW = dict(width=16, depth=3, activation="tanh", lr=0.3)
ODE_KW = dict(steps=5, grid=8, replicates=2, coupling="independent")


NFD_KW = dict(depth=3, activation="tanh", lr=0.5, eigenvalues=False)


def run_all(devices, seeds: int, particles: int, seed: int = 0, checkpoint=None):
    """The sharded (``devices``) or single-device (``devices=None``) runs: dict of numpy arrays.

    ``checkpoint``: a path on a file system every process sees; the exact-mode NFD solve is then
    also run in two halves with a checkpoint in between (every process saves, process 0 writes,
    every process loads), and its outputs are returned under ``nfd_exact_resumed``."""
    import jax.numpy as jnp

    import nfd
    from nfd.meanode import solve_mean_ode

    X, Y, X2, Y2 = make_problem(seed)
    sim = nfd.simulate(X, Y, seeds=seeds, dtype=jnp.float64, devices=devices, **SIM_KW)
    ode = solve_mean_ode(X2, Y2, particles=particles, dtype=jnp.float64, devices=devices, **ODE_KW)
    out = dict(simulate_outputs=sim.outputs, mean_ode_outputs=ode.outputs, mean_ode_forward=ode.forward)
    for mode in ("gia", "exact"):
        sol = nfd.solve(X, Y, particles=particles, backward=mode, dtype=jnp.float64, devices=devices, **NFD_KW)
        out[f"nfd_{mode}_outputs"], out[f"nfd_{mode}_sigma"] = sol.outputs, sol.sigma
    if checkpoint is not None:
        from jax.experimental import multihost_utils

        net = nfd.ResNet(depth=NFD_KW["depth"], input_dim=X.shape[1], activation=NFD_KW["activation"],
                         lr=NFD_KW["lr"])
        prob = nfd.particle_problem(net, X, Y, particles=particles, backward="exact", dtype=jnp.float64,
                                    devices=devices, eigenvalues=False)
        prob.save(prob.advance(prob.init(), prob.steps // 2), checkpoint)
        multihost_utils.sync_global_devices("checkpoint written")  # process 0 has written the file
        out["nfd_exact_resumed"] = prob.solution(prob.advance(prob.load(checkpoint))).outputs
    return out


def worker(args) -> int:
    if args.cpu_devices > 0:
        # must happen before jax is imported: K simulated CPU devices in this process
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.cpu_devices}").strip()
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.cpu_devices > 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process CPU collectives
    if args.auto:
        jax.distributed.initialize()  # Slurm, Open MPI or Cloud TPU: everything is detected
    else:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    import numpy as np

    me, nd = jax.process_index(), jax.device_count()
    seeds, particles = 2 * nd, 64 * nd
    ckpt = args.checkpoint or os.path.join(tempfile.gettempdir(), f"nfd_multihost_{args.coordinator or 'auto'}.npz"
                                           .replace(":", "_"))
    t0 = time.perf_counter()
    sharded = run_all("all", seeds, particles, args.seed, checkpoint=ckpt)
    t_sharded = time.perf_counter() - t0
    diffs = {}
    if not args.no_check:
        alone = run_all(None, seeds, particles, args.seed)  # this process, its first device only
        diffs = {k: float(np.abs(sharded[k] - alone[k]).max()) for k in alone}
    if me == 0:
        print(f"[multihost] {jax.process_count()} processes, {nd} devices "
              f"({jax.local_device_count()} local): {jax.devices()}")
        print(f"[multihost] sharded simulate (seeds={seeds}), nfd.solve and solve_mean_ode (particles={particles}) "
              f"in {t_sharded:.1f}s")
        same = bool(np.array_equal(sharded["nfd_exact_resumed"], sharded["nfd_exact_outputs"]))
        print(f"[multihost] NFD solve resumed from a checkpoint at step 3 equals the uninterrupted one bit for bit: "
              f"{same}")
        for k, d in diffs.items():
            print(f"[multihost] max |sharded - single process| {k}: {d:.3g}")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            np.savez(args.out, processes=jax.process_count(), devices=nd, seeds=seeds, particles=particles,
                     seed=args.seed, **sharded, **{"maxdiff_" + k: v for k, v in diffs.items()})
    jax.distributed.shutdown()
    return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(args) -> int:
    """Spawn ``args.launch_local`` copies of this script on this machine, one per process id."""
    n = args.launch_local
    coord = f"127.0.0.1:{_free_port()}"
    base = [sys.executable, os.path.abspath(__file__), "--num-processes", str(n), "--coordinator", coord,
            "--cpu-devices", str(args.cpu_devices), "--seed", str(args.seed)]
    if args.no_check:
        base += ["--no-check"]
    if args.out:
        base += ["--out", args.out]
    if args.checkpoint:
        base += ["--checkpoint", args.checkpoint]
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(n)]
    procs = [subprocess.Popen(base + ["--process-id", str(i)], stdout=logs[i], stderr=subprocess.STDOUT)
             for i in range(n)]
    deadline = time.monotonic() + args.timeout
    codes = [None] * n
    while None in codes and time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if any(c not in (None, 0) for c in codes):
            break  # one failed: the others would wait for it forever
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
    codes = [p.wait() for p in procs]
    for i, f in enumerate(logs):
        f.seek(0)
        text = "".join(line for line in f if not line.startswith("[Gloo]"))
        if codes[i] != 0 or i == 0:
            print(f"--- process {i} (exit {codes[i]}) ---\n{text}", end="")
    return 0 if all(c == 0 for c in codes) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-processes", type=int, help="total number of processes (hosts)")
    ap.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes-1")
    ap.add_argument("--coordinator", help="HOST:PORT of process 0 (the same on every process)")
    ap.add_argument("--auto", action="store_true",
                    help="let jax.distributed.initialize() detect the cluster (Slurm, Open MPI, Cloud TPU)")
    ap.add_argument("--launch-local", type=int, metavar="N", help="spawn N local processes instead")
    ap.add_argument("--cpu-devices", type=int, default=2,
                    help="simulated CPU devices per process (0: use this host's accelerators)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data (the same on every process)")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the comparison with this process's own single-device run")
    ap.add_argument("--out", default=None, help="process 0 writes the results here (.npz)")
    ap.add_argument("--checkpoint", default=None,
                    help="checkpoint path on a file system all processes share (default: in the temp dir)")
    ap.add_argument("--timeout", type=float, default=300, help="--launch-local: seconds before giving up")
    args = ap.parse_args(argv)
    if args.launch_local is not None:
        if args.launch_local < 1:
            ap.error("--launch-local needs N >= 1")
        return launch_local(args)
    if args.auto:
        return worker(args)
    if args.num_processes is None or args.process_id is None or args.coordinator is None:
        ap.error("give --num-processes, --process-id and --coordinator (or --auto, or --launch-local N)")
    if not 0 <= args.process_id < args.num_processes:
        ap.error(f"--process-id must lie in [0, {args.num_processes})")
    return worker(args)


if __name__ == "__main__":
    sys.exit(main())
