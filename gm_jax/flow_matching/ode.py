"""ODE integration for flow models: fixed-step Euler/Heun, adaptive Dormand-Prince 5(4), sampling and
exact likelihood by the instantaneous change of variables.

An ODE right-hand side is ``f(y, t) -> dy/dt`` on any pytree ``y`` with a scalar time ``t``. Every
integrator is one compiled loop: the fixed-step ones take the number of steps as an array (a
``fori_loop`` with a traced trip count, so a new step count does not recompile); Dormand-Prince is a
``while_loop`` with error control. Each returns ``(y(t1), info)`` with ``info["nfe"]`` the exact number of
evaluations of ``f``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gm_jax.core.errors import check_choice, require
from gm_jax.core.runge_kutta import dopri5_step

PyTree = Any
OdeFn = Callable[[PyTree, jax.Array], PyTree]
VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]

SOLVERS = ("euler", "heun", "dopri5")
DIVERGENCES = ("exact", "hutchinson")


def _axpy(a: jax.Array, x: PyTree, y: PyTree) -> PyTree:
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def euler_integrate(f: OdeFn, y0: PyTree, t0: jax.Array, t1: jax.Array,
                    num_steps: jax.Array) -> tuple[PyTree, dict[str, jax.Array]]:
    """Explicit Euler on a uniform grid: ``y_{n+1} = y_n + h f(y_n, t_n)``, ``h = (t1 - t0) / N``
    (Hairer, Norsett & Wanner 1993, eq. I.7.3). ``N = num_steps`` evaluations."""
    n = jnp.asarray(num_steps, jnp.int32)
    h = (jnp.asarray(t1, jnp.float32) - t0) / n

    def body(i: jax.Array, y: PyTree) -> PyTree:
        return _axpy(h, f(y, t0 + i * h), y)

    return jax.lax.fori_loop(0, n, body, y0), {"nfe": n}


def heun_integrate(f: OdeFn, y0: PyTree, t0: jax.Array, t1: jax.Array,
                   num_steps: jax.Array) -> tuple[PyTree, dict[str, jax.Array]]:
    """Heun's method (explicit trapezoid, 2nd order): ``k1 = f(y_n, t_n)``, ``k2 = f(y_n + h k1, t_n + h)``,
    ``y_{n+1} = y_n + h (k1 + k2) / 2`` (Hairer et al. 1993, Table II.1.1; Karras et al. 2022, Alg. 1).
    ``2N`` evaluations."""
    n = jnp.asarray(num_steps, jnp.int32)
    h = (jnp.asarray(t1, jnp.float32) - t0) / n

    def body(i: jax.Array, y: PyTree) -> PyTree:
        t = t0 + i * h
        k1 = f(y, t)
        k2 = f(_axpy(h, k1, y), t + h)
        return jax.tree.map(lambda yi, a, b: yi + 0.5 * h * (a + b), y, k1, k2)

    return jax.lax.fori_loop(0, n, body, y0), {"nfe": 2 * n}


def dopri5_integrate(f: OdeFn, y0: PyTree, t0: jax.Array, t1: jax.Array, rtol: jax.Array = 1e-5,
                     atol: jax.Array = 1e-5, max_steps: int = 1000,
                     first_step: jax.Array | None = None) -> tuple[PyTree, dict[str, jax.Array]]:
    """Adaptive Dormand-Prince 5(4) with the FSAL property (Dormand & Prince 1980; Hairer et al. 1993,
    sec. II.4-5): local error ``e = h sum_i (b5_i - b4_i) k_i``, accepted when
    ``||e / (atol + rtol max(|y|, |y_new|))||_rms <= 1``; the next step is ``h * clip(0.9 err^(-1/5), 0.2,
    10)``. Integrates forward or backward in time (``t1 < t0``). The first step is ``first_step`` or
    ``|t1 - t0| / 20``; at most ``max_steps`` attempted steps (``info["reached"]`` says whether ``t1`` was
    reached). ``info``: ``nfe`` = 1 + 6 per attempted step, ``accepted``, ``rejected``. The tableau and the
    single step are :func:`gm_jax.core.runge_kutta.dopri5_step`.
    """
    flat0, unravel = ravel_pytree(y0)
    t0 = jnp.asarray(t0, jnp.float32)
    t1 = jnp.asarray(t1, jnp.float32)
    direction = jnp.where(t1 >= t0, 1.0, -1.0)
    span = jnp.abs(t1 - t0)
    h0 = span / 20.0 if first_step is None else jnp.abs(jnp.asarray(first_step, jnp.float32))

    def rhs(y: jax.Array, t: jax.Array) -> jax.Array:
        return ravel_pytree(f(unravel(y), t))[0]

    def not_done(state: tuple) -> jax.Array:
        t, _, _, _, accepted, rejected = state
        return (direction * (t1 - t) > 1e-7 * jnp.maximum(span, 1.0)) & (accepted + rejected < max_steps)

    def step(state: tuple) -> tuple:
        t, y, k1, h_abs, accepted, rejected = state
        h = direction * jnp.minimum(h_abs, direction * (t1 - t))
        y5, err, k7 = dopri5_step(rhs, y, t, h, k1)
        scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y5))
        err_norm = jnp.sqrt(jnp.mean((err / scale) ** 2))
        ok = err_norm <= 1.0
        factor = jnp.clip(0.9 * jnp.where(err_norm > 0, err_norm, 1e-10) ** -0.2, 0.2, 10.0)
        return (jnp.where(ok, t + h, t), jnp.where(ok, y5, y), jnp.where(ok, k7, k1),
                jnp.abs(h) * factor, accepted + ok, rejected + (~ok))

    zero = jnp.zeros((), jnp.int32)
    state = (t0, flat0, rhs(flat0, t0), h0, zero, zero)
    t, y, _, _, accepted, rejected = jax.lax.while_loop(not_done, step, state)
    info = {"nfe": 1 + 6 * (accepted + rejected), "accepted": accepted, "rejected": rejected,
            "reached": direction * (t1 - t) <= 1e-7 * jnp.maximum(span, 1.0)}
    return unravel(y), info


def integrate(f: OdeFn, y0: PyTree, t0: jax.Array, t1: jax.Array, solver: str = "heun",
              num_steps: jax.Array = 50, rtol: jax.Array = 1e-5, atol: jax.Array = 1e-5,
              max_steps: int = 1000) -> tuple[PyTree, dict[str, jax.Array]]:
    """Dispatch to :func:`euler_integrate`, :func:`heun_integrate` or :func:`dopri5_integrate`."""
    check_choice("ODE solver", solver, SOLVERS)
    if solver == "euler":
        return euler_integrate(f, y0, t0, t1, num_steps)
    if solver == "heun":
        return heun_integrate(f, y0, t0, t1, num_steps)
    return dopri5_integrate(f, y0, t0, t1, rtol, atol, max_steps)


def _time_as_batch(t: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))


def sample_ode(velocity_fn: VelocityFn, x0: jax.Array, t0: jax.Array = 0.0, t1: jax.Array = 1.0,
               **solver_args: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Push source samples through ``dx/dt = v(x, t)`` from ``t0`` to ``t1`` (Lipman et al. 2023, eq. 1;
    Chen et al. 2018). ``velocity_fn(x [B, ...], t [B]) -> [B, ...]``."""
    return integrate(lambda x, t: velocity_fn(x, _time_as_batch(t, x)), x0, t0, t1, **solver_args)


def exact_divergence(velocity_fn: VelocityFn, x: jax.Array, t: jax.Array) -> jax.Array:
    """``div v = tr(dv/dx)`` per example from the full Jacobian (``D`` reverse-mode passes; Chen et al.
    2018, Theorem 1). Assumes the network treats examples independently. Reverse mode, because networks
    with a custom VJP (the U-Net's convolutions, :mod:`gm_jax.nn.im2col`) have no forward mode."""
    def single(xi: jax.Array, ti: jax.Array) -> jax.Array:
        fn = lambda v: velocity_fn(v[None], ti[None])[0].reshape(-1)
        jac = jax.jacrev(fn)(xi)
        return jnp.trace(jac.reshape(jac.shape[0], -1))

    return jax.vmap(single)(x, _time_as_batch(t, x))


def hutchinson_divergence(velocity_fn: VelocityFn, x: jax.Array, t: jax.Array,
                          probe: jax.Array) -> jax.Array:
    """Unbiased estimate ``eps^T (dv/dx) eps`` of ``div v`` with ``E[eps eps^T] = I`` (Hutchinson 1989;
    Grathwohl et al. 2019, eq. 7), one vector-Jacobian product for the whole batch: ``eps^T (dv/dx)`` is
    dotted with ``eps`` per example. Reverse mode, because networks with a custom VJP (the U-Net's
    convolutions, :mod:`gm_jax.nn.im2col`) have no forward mode."""
    _, vjp_fn = jax.vjp(lambda v: velocity_fn(v, _time_as_batch(t, x)), x)
    (row,) = vjp_fn(probe)
    return jnp.sum((probe * row).reshape(x.shape[0], -1), axis=1)


def standard_normal_log_prob(x: jax.Array) -> jax.Array:
    """``log N(x; 0, I)`` per example."""
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * jnp.sum(flat**2 + jnp.log(2 * jnp.pi), axis=1)


def ode_log_likelihood(velocity_fn: VelocityFn, x1: jax.Array, key: jax.Array | None = None,
                       divergence: str = "exact", t0: jax.Array = 0.0, t1: jax.Array = 1.0,
                       source_log_prob: Callable[[jax.Array], jax.Array] = standard_normal_log_prob,
                       **solver_args: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Exact log-likelihood of a continuous normalizing flow by the instantaneous change of variables
    ``d log p(x_t) / dt = -div v(x_t, t)`` (Chen et al. 2018, Theorem 1):
    ``log p_1(x1) = log p_0(x0) - int_0^1 div v(x_t, t) dt``, with ``x0`` found by integrating the
    augmented ODE ``(x, l)' = (v, div v)`` from ``t1`` back to ``t0`` starting at ``(x1, 0)``.
    ``divergence``: 'exact' (Jacobian trace) or 'hutchinson' (one Rademacher probe drawn from ``key``,
    held fixed along the trajectory as in FFJORD, Grathwohl et al. 2019). Returns ``log p`` per example.
    """
    check_choice("divergence", divergence, DIVERGENCES)
    if divergence == "hutchinson":
        require(key is not None, "divergence='hutchinson' needs a PRNG key; pass key=...")
        probe = jax.random.rademacher(key, x1.shape, jnp.float32)
        div_fn = lambda x, t: hutchinson_divergence(velocity_fn, x, t, probe)
    else:
        div_fn = lambda x, t: exact_divergence(velocity_fn, x, t)

    def augmented(y: tuple[jax.Array, jax.Array], t: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, _ = y
        return velocity_fn(x, _time_as_batch(t, x)), div_fn(x, t)

    (x0, integral), info = integrate(augmented, (x1, jnp.zeros((x1.shape[0],))), t1, t0, **solver_args)
    return source_log_prob(x0) + integral, info


def reflow_pairs(velocity_fn: VelocityFn, x0: jax.Array, t0: jax.Array = 0.0, t1: jax.Array = 1.0,
                 **solver_args: Any) -> tuple[jax.Array, jax.Array]:
    """Rectified-flow reflow coupling ``(x0, Phi(x0))`` with ``Phi`` the flow of the trained ODE (Liu et al.
    2023, Alg. 1, 'reflow'); training on these pairs with the linear path straightens the flow and does
    not increase any convex transport cost (Liu et al. 2023, Theorem 3.5)."""
    x1, _ = sample_ode(velocity_fn, x0, t0, t1, **solver_args)
    return x0, jax.lax.stop_gradient(x1)
