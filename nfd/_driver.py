"""One driver for every stepped solver: the loop, progress, checkpoints and the divergence policy.

A *problem* is a validated run, built before any work by ``nfd.particle_problem``,
``nfd.finite.simulation_problem`` or ``nfd.meanode.mean_ode_problem``.  It knows how to take
steps and nothing about when to stop, print or save::

    problem.steps              total number of steps of the run
    problem.segment            the run is made of equal segments of this many steps (a Mean ODE
                               solve runs one segment per replicate); checkpoints are counted
                               from the start of each segment
    problem.fingerprint        hash of everything that fixes the numbers (sha256, 32 hex digits)
    problem.name               how messages name the solver
    problem.init() -> State
    problem.advance(state, n, donate=False) -> State     n more steps (within one segment)
    problem.save(state, path) / problem.load(path) -> State
    problem.divergence(state) -> Divergence | None       first non-finite step done so far
    problem.solution(state, divergence=None) -> result

Every problem's ``advance`` runs one compiled program whose loop bounds are traced, so any split
of a run gives bit-identical results: a checkpoint written after step k and resumed, in this
process or another, equals the uninterrupted run.

Example:
    >>> import numpy as np, nfd
    >>> X = np.random.default_rng(0).normal(size=(6, 2)); Y = X[:, 0]
    >>> net = nfd.ResNet(depth=4, input_dim=2, activation="tanh", lr=0.5)
    >>> sol = run(nfd.particle_problem(net, X, Y, particles=256), progress=False)
    >>> sol.outputs.shape, sol.status.diverged
    ((6,), False)
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Any

from . import _checkpoint
from ._divergence import check_policy, report

__all__ = ["run", "State", "Problem", "next_stop"]


@dataclasses.dataclass(frozen=True)
class State:
    """The state of a stepped run after ``step`` steps.

    Attributes:
        step: number of steps done (0..problem.steps).
        carry: the solver's pytree of arrays (device arrays; what its compiled program carries).
        fingerprint: the problem it belongs to (see :func:`run`).
    """

    step: int
    carry: Any
    fingerprint: str


class Problem:
    """Base of the stepped problems: ``steps`` from the frozen static description, one segment.

    A subclass provides ``name``, ``fingerprint``, ``report_kw`` (the words of the divergence
    message: ``what``, ``quantity``, ``hint``, ``index_name``) and ``init`` / ``advance`` /
    ``save`` / ``load`` / ``divergence`` / ``solution``.
    """

    describe = ""

    @property
    def steps(self) -> int:
        """Number of steps of the whole run."""
        return self.static.steps

    @property
    def segment(self) -> int:
        """Steps per segment (checkpoints count from each segment's start)."""
        return self.steps


def check_state(problem, state) -> None:
    """Refuse a state of another problem (or not a state at all)."""
    if not isinstance(state, State):
        raise ValueError(f"state must be a {State.__module__}.State, got {type(state).__name__}")
    if state.fingerprint != problem.fingerprint:
        raise ValueError("state belongs to a different problem (network, data, seed or options differ)")


def check_steps(problem, state, steps) -> int:
    """Number of steps an ``advance(state, steps)`` call takes (``None``: to the segment's end)."""
    seg = getattr(problem, "segment", problem.steps)
    left = min(problem.steps - state.step, seg - state.step % seg if state.step < problem.steps else 0)
    n = left if steps is None else steps
    if isinstance(n, bool) or not isinstance(n, int) and type(n).__module__ != "numpy" or not 0 <= n <= left:
        raise ValueError(f"steps must be an integer in [0, {left}] (steps left), got {steps!r}")
    return int(n)


def next_stop(step: int, total: int, *, segment: int, chunk: int | None, every: int | None) -> tuple[int, bool]:
    """(the next step to stop at, whether to write a checkpoint there).

    A run stops at the end of each segment, at multiples of ``chunk`` (progress reports,
    ``chunk_steps``) and of ``every`` (checkpoints), both counted from the segment's start; it
    writes a checkpoint at every stop when ``every`` is ``None``, else at multiples of ``every``
    and at segment ends."""
    local = step % segment
    start = step - local
    end = min(start + segment, total)
    stops = [end]
    if chunk:
        stops.append(start + (local // chunk + 1) * chunk)
    if every:
        stops.append(start + (local // every + 1) * every)
    nxt = min(stops)
    save = every is None or (nxt - start) % every == 0 or nxt == end
    return nxt, save


def run(problem, *, checkpoint=None, checkpoint_every: int | None = None, progress: bool = False,
        on_divergence: str = "raise", chunk_steps: int | None = None):
    """Run ``problem`` to the end and return its result.

    Args:
        problem: a validated problem (see the module docstring).
        checkpoint: a file path or ``None``.  If the file exists the run resumes from it (it must
            belong to the same problem, else ``ValueError``); the state is written there,
            atomically, every ``checkpoint_every`` steps and at the end.
        checkpoint_every: steps between checkpoints (needs ``checkpoint``; default: at every stop).
        progress: print the step, elapsed and remaining time to stderr (about 20 times a run;
            the rate and the time left exclude the first chunk, which includes compilation), or a
            function ``progress(done, steps)`` called after each of those chunks instead (the
            ``nfd`` command draws its progress bar with it).
        on_divergence: ``"raise"`` (:class:`~nfd.DivergenceError` naming the first non-finite
            step, checked at every stop so a diverged state is never saved) or ``"return"``
            (warn; the result's ``status`` records the step).
        chunk_steps: stop (and report progress) at least every this many steps; results are
            identical for any value.

    Returns:
        ``problem.solution(state)``.
    """
    checkpoint, checkpoint_every = _checkpoint.check_options(checkpoint, checkpoint_every)
    check_policy(on_divergence)
    if chunk_steps is not None and (isinstance(chunk_steps, bool) or not isinstance(chunk_steps, int)
                                    and type(chunk_steps).__module__ != "numpy" or chunk_steps < 1):
        raise ValueError(f"chunk_steps must be a positive integer, got {chunk_steps!r}")
    total = problem.steps
    segment = getattr(problem, "segment", total) or 1
    name = problem.name
    chunk = int(chunk_steps) if chunk_steps is not None else (max(1, math.ceil(total / 20)) if progress else None)

    def say(msg):
        if progress and not callable(progress):
            print(f"{name}: {msg}", file=sys.stderr, flush=True)

    if checkpoint is not None and os.path.exists(checkpoint):
        state = problem.load(checkpoint)
        say(f"resuming from {checkpoint} at step {state.step}/{total}")
    else:
        say("compiling and starting" + (f" ({problem.describe})" if getattr(problem, "describe", "") else ""))
        state = problem.init()
    t0, first = time.perf_counter(), None
    kw = problem.report_kw
    while state.step < total:
        nxt, save = next_stop(state.step, total, segment=segment, chunk=chunk, every=checkpoint_every)
        state = problem.advance(state, nxt - state.step, donate=True)
        if state.step < total and on_divergence == "raise":
            report(problem.divergence(state), on_divergence="raise", **kw)  # before a diverged state is saved
        if checkpoint is not None and save:
            problem.save(state, checkpoint)
        now = time.perf_counter()
        if first is None:  # the first chunk includes compilation: the rate is measured after it
            first = (now, state.step)
        if callable(progress):
            progress(state.step, total)
        elif progress:
            el = now - t0
            t1, d1 = first
            if state.step > d1:
                left = f"~{(now - t1) / (state.step - d1) * (total - state.step):.0f} s left"
            else:
                left = f"first chunk (with compilation) {el:.1f} s"
            say(f"step {state.step}/{total}  {el:.1f} s elapsed, {left}")
    div = problem.divergence(state)
    report(div, on_divergence=on_divergence, stacklevel=3, **kw)
    return problem.solution(state, divergence=div)
