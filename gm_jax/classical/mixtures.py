"""Mixture models fitted by expectation-maximisation (Dempster, Laird & Rubin 1977): Gaussian mixtures with
full, diagonal or spherical covariances, and mixtures of Bernoullis for binary images.

EM is an optax-like pair ``(init, step)`` of pure functions: ``init(key, x) -> params`` seeds the means with
k-means++ (Arthur & Vassilvitskii 2007) and takes one M-step on the hard assignment; ``step(params, x) ->
(params, metrics)`` is one E-step (responsibilities under ``params``) and one M-step.
``metrics["log_likelihood"]`` is the mean log-likelihood of ``x`` under the params *given* to the step, so
over successive steps it never decreases (Bishop 2006, sec. 9.4).

Gaussian parameters: ``{"weights": [K], "means": [K, D], "covariances": ...}`` with covariances
``[K, D, D]`` (full), ``[K, D]`` (diag: variances) or ``[K]`` (spherical: one variance per component).
Bernoulli parameters: ``{"weights": [K], "probs": [K, D]}``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import ConfigError, check_choice, require

Params = dict[str, jax.Array]
COVARIANCE_TYPES = ("full", "diag", "spherical")
_TINY_COUNT = 10.0 * float(np.finfo(np.float32).eps)


class EMUpdate(NamedTuple):
    """An optax-like pair of pure functions: ``init(key, x) -> params`` and
    ``step(params, x) -> (params, metrics)``."""

    init: Any
    step: Any


def _check_data(x: jax.Array, num_components: int) -> None:
    require(x.ndim == 2, f"mixture data must be [N, D], got shape {x.shape}; flatten each example first")
    require(1 <= num_components <= x.shape[0],
            f"num_components={num_components} must be between 1 and the number of data points "
            f"({x.shape[0]}); use fewer components or more data")


def check_binary(x: jax.Array) -> None:
    """Raise a one-line ConfigError unless every entry of ``x`` is 0 or 1 (host-side; skipped for
    traced values)."""
    if isinstance(x, jax.core.Tracer):
        return
    a = np.asarray(x)
    if not np.all((a == 0) | (a == 1)):
        raise ConfigError(f"binary data required (values in {{0, 1}}), got values in [{a.min()}, {a.max()}]; "
                          "binarize the images first (e.g. x > 0.5)")


@functools.partial(jax.jit, static_argnames=('num_components',))
def kmeans_plus_plus(key: jax.Array, x: jax.Array, num_components: int) -> jax.Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007, sec. 2.2): the first centre uniformly, each next
    one with probability proportional to ``D(x)^2``, the squared distance to the nearest chosen centre.
    Returns ``[K, D]``."""
    x = jnp.asarray(x, jnp.float32)
    _check_data(x, num_components)
    keys = jax.random.split(key, num_components)
    first = x[jax.random.randint(keys[0], (), 0, x.shape[0])]
    centers = jnp.zeros((num_components, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=-1)

    def body(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        centers, d2 = carry
        logits = jnp.where(jnp.sum(d2) > 0, jnp.log(jnp.maximum(d2, 0.0)), 0.0)
        new = x[jax.random.categorical(keys[i], logits)]
        return centers.at[i].set(new), jnp.minimum(d2, jnp.sum((x - new) ** 2, axis=-1))

    centers, _ = jax.lax.fori_loop(1, num_components, body, (centers, d2))
    return centers


@jax.jit
def _hard_responsibilities(x: jax.Array, centers: jax.Array) -> jax.Array:
    """One-hot nearest centre; ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` (``|x|^2`` dropped) keeps memory at
    ``[N, K]`` instead of ``[N, K, D]`` (60000 x 500 x 784 floats would not fit)."""
    d2 = jnp.sum(centers ** 2, axis=-1)[None] - 2.0 * x @ centers.T
    return jax.nn.one_hot(jnp.argmin(d2, axis=1), centers.shape[0])


# ----------------------------------------------------------------------------------------- Gaussian mixtures


@functools.partial(jax.jit, static_argnames=('covariance_type',))
def gaussian_component_log_prob(params: Params, x: jax.Array, covariance_type: str) -> jax.Array:
    """``log N(x_n | mu_k, Sigma_k)`` for every point and component, ``[N, K]`` (full covariances via a
    Cholesky factor ``Sigma = L L^T``: ``-1/2 (D log 2 pi + 2 sum log diag L + |L^-1 (x - mu)|^2)``)."""
    check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    x = jnp.asarray(x, jnp.float32)
    means, cov = params["means"], params["covariances"]
    d = x.shape[-1]
    diff = x[:, None, :] - means[None]  # [N, K, D]
    if covariance_type == "full":
        chol = jnp.linalg.cholesky(cov)  # [K, D, D]
        sol = jax.vmap(lambda c, r: jax.scipy.linalg.solve_triangular(c, r.T, lower=True).T,
                       in_axes=(0, 1), out_axes=1)(chol, diff)
        maha = jnp.sum(sol ** 2, axis=-1)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    elif covariance_type == "diag":
        maha = jnp.sum(diff ** 2 / cov[None], axis=-1)
        log_det = jnp.sum(jnp.log(cov), axis=-1)
    else:
        maha = jnp.sum(diff ** 2, axis=-1) / cov[None]
        log_det = d * jnp.log(cov)
    return -0.5 * (d * math.log(2.0 * math.pi) + log_det[None] + maha)


def mixture_joint_log_prob(params: Params, component_log_prob: jax.Array) -> jax.Array:
    """``log pi_k + log p(x_n | k)``, ``[N, K]``, from the component log-likelihoods ``[N, K]`` (Bishop 2006,
    eq. 9.7 in logs): its log-sum-exp over ``k`` is ``log p(x_n)``, its softmax the responsibilities."""
    return jnp.log(params["weights"])[None] + component_log_prob


@functools.partial(jax.jit, static_argnames=('covariance_type',))
def gmm_log_density(params: Params, x: jax.Array, covariance_type: str) -> jax.Array:
    """``log p(x_n) = log sum_k pi_k N(x_n | mu_k, Sigma_k)`` (Bishop 2006, eq. 9.14), ``[N]``."""
    joint = mixture_joint_log_prob(params, gaussian_component_log_prob(params, x, covariance_type))
    return jax.nn.logsumexp(joint, axis=1)


@functools.partial(jax.jit, static_argnames=('covariance_type',))
def gmm_responsibilities(params: Params, x: jax.Array, covariance_type: str) -> jax.Array:
    """E-step ``gamma_nk = pi_k N(x_n|mu_k,Sigma_k) / sum_j pi_j N(x_n|mu_j,Sigma_j)`` (Bishop 2006,
    eq. 9.23), ``[N, K]``; each row sums to one."""
    joint = mixture_joint_log_prob(params, gaussian_component_log_prob(params, x, covariance_type))
    return jax.nn.softmax(joint, axis=1)


@functools.partial(jax.jit, static_argnames=('covariance_type',))
def gmm_m_step(x: jax.Array, resp: jax.Array, covariance_type: str, reg_covar: float | jax.Array) -> Params:
    """M-step (Bishop 2006, eqs. 9.24-9.26): ``N_k = sum_n gamma_nk``, ``mu_k = sum_n gamma_nk x_n / N_k``,
    ``Sigma_k = sum_n gamma_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg_covar I``, ``pi_k = N_k / N``.

    ``reg_covar > 0`` is added to every variance (diagonal of every covariance) so that a component that
    collapses onto one point or a constant pixel keeps a positive-definite covariance instead of a singular
    one; each ``N_k`` gets ``10 eps`` so an empty component stays finite. Diagonal covariances keep only
    the diagonal of ``Sigma_k``, spherical ones its mean.
    """
    check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    x = jnp.asarray(x, jnp.float32)
    nk = jnp.sum(resp, axis=0) + _TINY_COUNT
    means = resp.T @ x / nk[:, None]
    if covariance_type == "full":
        diff = x[:, None, :] - means[None]
        cov = jnp.einsum("nk,nki,nkj->kij", resp, diff, diff) / nk[:, None, None]
        cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2)) + reg_covar * jnp.eye(x.shape[1])[None]
    else:
        var = resp.T @ (x * x) / nk[:, None] - 2.0 * means * (resp.T @ x) / nk[:, None] + means ** 2
        var = jnp.maximum(var, 0.0) + reg_covar
        cov = var if covariance_type == "diag" else jnp.mean(var, axis=1)
    weights = nk / jnp.sum(nk)
    return {"weights": weights, "means": means, "covariances": cov}


def gaussian_mixture_em(num_components: int, covariance_type: str = "full",
                        reg_covar: float = 1e-6) -> EMUpdate:
    """EM for a Gaussian mixture (Bishop 2006, sec. 9.2.2) as ``(init, step)``; see the module docstring.

    ``reg_covar`` (> 0) is the variance added to every covariance in each M-step (``gmm_m_step``); in
    float32 keep it well above ``1e-7`` times the largest data variance for full covariances. The
    log-likelihood is non-decreasing up to float32 rounding and this regularisation.
    """
    check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    require(num_components >= 1, f"num_components must be >= 1, got {num_components}")
    require(reg_covar > 0, f"reg_covar must be > 0 so covariances stay positive definite, got {reg_covar}")

    def init(key: jax.Array, x: jax.Array) -> Params:
        x = jnp.asarray(x, jnp.float32)
        centers = kmeans_plus_plus(key, x, num_components)
        return gmm_m_step(x, _hard_responsibilities(x, centers), covariance_type, reg_covar)

    def step(params: Params, x: jax.Array) -> tuple[Params, dict[str, jax.Array]]:
        x = jnp.asarray(x, jnp.float32)
        _check_data(x, num_components)
        joint = mixture_joint_log_prob(params, gaussian_component_log_prob(params, x, covariance_type))
        log_lik = jax.nn.logsumexp(joint, axis=1)
        resp = jnp.exp(joint - log_lik[:, None])
        new = gmm_m_step(x, resp, covariance_type, reg_covar)
        return new, {"log_likelihood": jnp.mean(log_lik)}

    return EMUpdate(init=init, step=step)


@functools.partial(jax.jit, static_argnames=('num', 'covariance_type'))
def gmm_sample(params: Params, key: jax.Array, num: int, covariance_type: str) -> tuple[jax.Array, jax.Array]:
    """Ancestral sampling: ``k ~ Categorical(pi)``, ``x = mu_k + L_k z`` with ``z ~ N(0, I)`` and
    ``L_k L_k^T = Sigma_k``. Returns ``(x [num, D], k [num])``."""
    check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    kc, kz = jax.random.split(key)
    means, cov = params["means"], params["covariances"]
    comp = jax.random.categorical(kc, jnp.log(params["weights"]), shape=(num,))
    z = jax.random.normal(kz, (num, means.shape[1]))
    if covariance_type == "full":
        noise = jnp.einsum("nij,nj->ni", jnp.linalg.cholesky(cov)[comp], z)
    elif covariance_type == "diag":
        noise = jnp.sqrt(cov[comp]) * z
    else:
        noise = jnp.sqrt(cov[comp])[:, None] * z
    return means[comp] + noise, comp


# ---------------------------------------------------------------------------------------- Bernoulli mixtures


@jax.jit
def bernoulli_component_log_prob(params: Params, x: jax.Array) -> jax.Array:
    """``log p(x_n | k) = sum_d x_nd log mu_kd + (1 - x_nd) log(1 - mu_kd)`` (Bishop 2006, eq. 9.44),
    ``[N, K]``."""
    x = jnp.asarray(x, jnp.float32)
    p = params["probs"]
    return x @ jnp.log(p).T + (1.0 - x) @ jnp.log1p(-p).T


@jax.jit
def bernoulli_mixture_log_density(params: Params, x: jax.Array) -> jax.Array:
    """``log p(x_n) = log sum_k pi_k prod_d mu_kd^x (1 - mu_kd)^(1-x)`` (Bishop 2006, eq. 9.47), ``[N]``."""
    joint = mixture_joint_log_prob(params, bernoulli_component_log_prob(params, x))
    return jax.nn.logsumexp(joint, axis=1)


@jax.jit
def bernoulli_mixture_responsibilities(params: Params, x: jax.Array) -> jax.Array:
    """E-step (Bishop 2006, eq. 9.56), ``[N, K]``; each row sums to one."""
    joint = mixture_joint_log_prob(params, bernoulli_component_log_prob(params, x))
    return jax.nn.softmax(joint, axis=1)


@jax.jit
def bernoulli_m_step(x: jax.Array, resp: jax.Array, smoothing: float | jax.Array) -> Params:
    """M-step with Beta smoothing: ``mu_k = (sum_n gamma_nk x_n + a) / (N_k + 2 a)`` (Bishop 2006,
    eq. 9.59 made a MAP estimate under a ``Beta(a + 1, a + 1)`` prior; ``a = 1`` is Laplace's rule), and
    ``pi_k = N_k / N``. With ``a > 0`` every ``mu_kd`` lies strictly inside (0, 1), so no ``log 0``."""
    x = jnp.asarray(x, jnp.float32)
    nk = jnp.sum(resp, axis=0) + _TINY_COUNT
    probs = (resp.T @ x + smoothing) / (nk[:, None] + 2.0 * smoothing)
    return {"weights": nk / jnp.sum(nk), "probs": probs}


def bernoulli_log_prior(params: Params, smoothing: float | jax.Array) -> jax.Array:
    """Unnormalised log density of the ``Beta(a + 1, a + 1)`` prior on every ``mu_kd``:
    ``a sum_kd [log mu_kd + log(1 - mu_kd)]``."""
    p = params["probs"]
    return smoothing * jnp.sum(jnp.log(p) + jnp.log1p(-p))


def bernoulli_mixture_em(num_components: int, smoothing: float = 1.0) -> EMUpdate:
    """EM for a mixture of Bernoullis (Bishop 2006, sec. 9.3.3) as ``(init, step)``.

    ``smoothing`` ``a > 0`` is the Beta/Laplace pseudo-count of ``bernoulli_m_step``. Because the M-step
    is a MAP step, the quantity EM never decreases is ``metrics["objective"]`` = mean log-likelihood +
    log prior / N; ``metrics["log_likelihood"]`` is reported as well (for small ``a`` it is monotone in
    practice too). ``x`` must be binary (checked when concrete).
    """
    require(num_components >= 1, f"num_components must be >= 1, got {num_components}")
    require(smoothing > 0, f"smoothing must be > 0 (it keeps the probabilities away from 0 and 1), "
            f"got {smoothing}")

    def init(key: jax.Array, x: jax.Array) -> Params:
        x = jnp.asarray(x, jnp.float32)
        check_binary(x)
        centers = kmeans_plus_plus(key, x, num_components)
        return bernoulli_m_step(x, _hard_responsibilities(x, centers), smoothing)

    def step(params: Params, x: jax.Array) -> tuple[Params, dict[str, jax.Array]]:
        x = jnp.asarray(x, jnp.float32)
        _check_data(x, num_components)
        check_binary(x)
        joint = mixture_joint_log_prob(params, bernoulli_component_log_prob(params, x))
        log_lik = jax.nn.logsumexp(joint, axis=1)
        resp = jnp.exp(joint - log_lik[:, None])
        mean_ll = jnp.mean(log_lik)
        objective = mean_ll + bernoulli_log_prior(params, smoothing) / x.shape[0]
        return bernoulli_m_step(x, resp, smoothing), {"log_likelihood": mean_ll, "objective": objective}

    return EMUpdate(init=init, step=step)


@functools.partial(jax.jit, static_argnames=('num',))
def bernoulli_mixture_sample(params: Params, key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
    """Ancestral sampling ``k ~ Categorical(pi)``, ``x_d ~ Bernoulli(mu_kd)``; returns ``(x, k)``."""
    kc, kx = jax.random.split(key)
    comp = jax.random.categorical(kc, jnp.log(params["weights"]), shape=(num,))
    x = jax.random.bernoulli(kx, params["probs"][comp]).astype(jnp.float32)
    return x, comp
