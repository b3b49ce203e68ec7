"""Bernoulli-Bernoulli restricted Boltzmann machine (Smolensky 1986; Hinton 2002).

Parameters are a dict ``{"w": [V, H], "b": [V] (visible bias), "c": [H] (hidden bias)}``; the energy is
``E(v, h) = -v^T W h - b^T v - c^T h`` with binary ``v`` and ``h``. Training is contrastive divergence
(CD-k, Hinton 2002) or persistent CD (Tieleman 2008) written as an optax-like ``(init, step)`` pair;
``log Z`` is estimated by annealed importance sampling (Salakhutdinov & Murray 2008) or computed exactly
by enumeration for tiny models.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gm_jax.classical.boltzmann import MAX_ENUMERATION_UNITS, all_states
from gm_jax.core.errors import check_choice, require

Params = dict[str, jax.Array]


def rbm_init(key: jax.Array, num_visible: int, num_hidden: int, scale: float = 0.01,
             visible_bias: jax.Array | None = None) -> Params:
    """Weights ``~ N(0, scale^2)``, zero hidden biases, visible biases ``visible_bias`` (zero when
    ``None``; ``base_rate_visible_bias`` of the data is the usual choice, Hinton 2010, sec. 8)."""
    require(num_visible > 0 and num_hidden > 0,
            f"num_visible and num_hidden must be > 0, got {num_visible}, {num_hidden}")
    b = jnp.zeros((num_visible,)) if visible_bias is None else jnp.asarray(visible_bias, jnp.float32)
    return {"w": scale * jax.random.normal(key, (num_visible, num_hidden)), "b": b,
            "c": jnp.zeros((num_hidden,))}


@jax.jit
def base_rate_visible_bias(data: jax.Array, smoothing: float = 1.0) -> jax.Array:
    """``log(p_i / (1 - p_i))`` with ``p_i = (sum_n v_ni + s) / (N + 2 s)``: the visible biases of the
    independent model that matches the data marginals (Laplace smoothing ``s`` keeps them finite)."""
    data = jnp.asarray(data, jnp.float32)
    p = (jnp.sum(data, axis=0) + smoothing) / (data.shape[0] + 2.0 * smoothing)
    return jnp.log(p) - jnp.log1p(-p)


def rbm_energy(params: Params, v: jax.Array, h: jax.Array) -> jax.Array:
    """``E(v, h) = -v^T W h - b^T v - c^T h`` (Hinton 2002, eq. 1 for binary units)."""
    return -jnp.einsum("...i,ij,...j->...", v, params["w"], h) - v @ params["b"] - h @ params["c"]


@jax.jit
def free_energy(params: Params, v: jax.Array) -> jax.Array:
    """``F(v) = -b^T v - sum_j softplus(c_j + (v^T W)_j)`` so that ``P(v) = exp(-F(v)) / Z``
    (Hinton 2010, eq. 9)."""
    v = jnp.asarray(v, jnp.float32)
    return -v @ params["b"] - jnp.sum(jax.nn.softplus(v @ params["w"] + params["c"]), axis=-1)


def hidden_probs(params: Params, v: jax.Array) -> jax.Array:
    """``P(h_j = 1 | v) = sigmoid(c_j + (v^T W)_j)`` (Hinton 2010, eq. 7)."""
    return jax.nn.sigmoid(v @ params["w"] + params["c"])


def visible_probs(params: Params, h: jax.Array) -> jax.Array:
    """``P(v_i = 1 | h) = sigmoid(b_i + (W h)_i)`` (Hinton 2010, eq. 8)."""
    return jax.nn.sigmoid(h @ params["w"].T + params["b"])


def block_gibbs_step(params: Params, key: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One block Gibbs step ``v -> h ~ P(h|v) -> v' ~ P(v|h)``; returns ``(v', P(v'=1|h))``. One uniform
    draw serves both layers."""
    num_h = params["c"].shape[0]
    u = jax.random.uniform(key, (*v.shape[:-1], num_h + v.shape[-1]))
    h = (u[..., :num_h] < hidden_probs(params, v)).astype(jnp.float32)
    pv = visible_probs(params, h)
    return (u[..., num_h:] < pv).astype(jnp.float32), pv


@jax.jit
def gibbs_chain(params: Params, key: jax.Array, v0: jax.Array,
                num_steps: int | jax.Array) -> tuple[jax.Array, jax.Array]:
    """``num_steps >= 1`` block Gibbs steps from ``v0 [B, V]`` as one ``fori_loop`` (``num_steps`` may be
    a traced array); returns the last sample and its visible probabilities."""
    v0 = jnp.asarray(v0, jnp.float32)

    def body(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        return block_gibbs_step(params, jax.random.fold_in(key, i), carry[0])

    return jax.lax.fori_loop(0, num_steps, body, (v0, v0))


@functools.partial(jax.jit, static_argnames=("num",))
def sample_rbm(params: Params, key: jax.Array, num: int,
               num_steps: int | jax.Array = 1000) -> tuple[jax.Array, jax.Array]:
    """Samples by running ``num`` chains from uniform noise for ``num_steps`` block Gibbs steps; returns the
    binary samples ``[num, V]`` and the visible probabilities of the last step."""
    k0, kc = jax.random.split(key)
    v0 = jax.random.bernoulli(k0, 0.5, (num, params["b"].shape[0])).astype(jnp.float32)
    return gibbs_chain(params, kc, v0, num_steps)


class CDState(NamedTuple):
    """State of the CD / PCD update: the optimizer state (for the default rule, the momentum buffers) and
    the persistent chains ``[C, V]`` (used only by PCD)."""

    opt_state: Any
    chains: jax.Array


class CDUpdate(NamedTuple):
    """An optax-like pair of pure functions, ``init(params, key, num_chains)`` and
    ``step(params, state, v_data, key) -> (params, state, metrics)``."""

    init: Any
    step: Any


def cd_gradient(params: Params, v_data: jax.Array, v_model: jax.Array) -> Params:
    """Positive minus negative phase statistics (Hinton 2002, eq. 5; Hinton 2010, sec. 3):
    ``dW = <v p(h|v)^T>_data - <v p(h|v)^T>_model``, ``db = <v>_data - <v>_model``,
    ``dc = <p(h|v)>_data - <p(h|v)>_model``, an ascent direction for the log-likelihood."""
    ph_d, ph_m = hidden_probs(params, v_data), hidden_probs(params, v_model)
    n_d, n_m = v_data.shape[0], v_model.shape[0]
    return {"w": v_data.T @ ph_d / n_d - v_model.T @ ph_m / n_m,
            "b": jnp.mean(v_data, 0) - jnp.mean(v_model, 0),
            "c": jnp.mean(ph_d, 0) - jnp.mean(ph_m, 0)}


def contrastive_divergence(k: int | jax.Array = 1, learning_rate: float | jax.Array = 0.05,
                           weight_decay: float | jax.Array = 0.0, momentum: float | jax.Array = 0.0,
                           persistent: bool = False,
                           optimizer: optax.GradientTransformation | None = None) -> CDUpdate:
    """CD-k (Hinton 2002) or persistent CD (Tieleman 2008) with an L2 penalty on ``W``.

    The ascent direction ``g = cd_gradient - weight_decay W`` (Hinton 2010, sec. 10; decay on ``W`` only) is
    handed to ``optimizer`` as the gradient ``-g`` of a loss, so any optax transformation applies (the
    family passes ``gm_jax.core.make_optimizer(config.optim)``). Without one, the rule is Hinton's momentum
    SGD (Hinton 2010, sec. 9), ``vel <- momentum vel + learning_rate g``, ``params += vel``, which is exactly
    ``optax.sgd(learning_rate, momentum)`` (its trace equals ``vel / learning_rate``).

    CD-k starts the negative chain at the data batch and runs ``k`` block Gibbs steps; PCD continues the
    persistent chains kept in the state (any number of chains, independent of the batch size). ``step``
    returns metrics ``reconstruction_error`` (mean squared error of the mean-field reconstruction
    ``P(v=1 | h = P(h=1|v))``) and ``free_energy_gap`` (mean F(data) - mean F(negatives)).
    """
    opt = optimizer if optimizer is not None else optax.sgd(learning_rate, momentum=momentum)

    def init(params: Params, key: jax.Array, num_chains: int = 1) -> CDState:
        chains = jax.random.bernoulli(key, 0.5, (num_chains, params["b"].shape[0])).astype(jnp.float32)
        return CDState(opt_state=opt.init(params), chains=chains)

    def step(params: Params, state: CDState, v_data: jax.Array,
             key: jax.Array) -> tuple[Params, CDState, dict[str, jax.Array]]:
        v_data = jnp.asarray(v_data, jnp.float32)
        start = state.chains if persistent else v_data
        v_model, _ = gibbs_chain(params, key, start, k)
        grad = cd_gradient(params, v_data, v_model)
        grad["w"] = grad["w"] - weight_decay * params["w"]
        updates, opt_state = opt.update(jax.tree.map(jnp.negative, grad), state.opt_state, params)
        new_params = optax.apply_updates(params, updates)
        recon = visible_probs(params, hidden_probs(params, v_data))
        metrics = {"reconstruction_error": jnp.mean((recon - v_data) ** 2),
                   "free_energy_gap": jnp.mean(free_energy(params, v_data))
                   - jnp.mean(free_energy(params, v_model))}
        chains = v_model if persistent else state.chains
        return new_params, CDState(opt_state=opt_state, chains=chains), metrics

    return CDUpdate(init=init, step=step)


@jax.jit
def exact_log_partition(params: Params) -> jax.Array:
    """``log Z = log sum_v exp(-F(v))`` by enumeration over the smaller layer (for tiny models): summing
    over ``h`` instead uses ``F(h) = -c^T h - sum_i softplus(b_i + (W h)_i)``."""
    num_v, num_h = params["w"].shape
    require(min(num_v, num_h) <= MAX_ENUMERATION_UNITS,
            f"exact log Z needs a layer of <= {MAX_ENUMERATION_UNITS} units, got {num_v}x{num_h}")
    if num_v <= num_h:
        return jax.nn.logsumexp(-free_energy(params, all_states(num_v)))
    flipped = {"w": params["w"].T, "b": params["c"], "c": params["b"]}
    return jax.nn.logsumexp(-free_energy(flipped, all_states(num_h)))


def ais_betas(num_betas: int, schedule: str = "linear") -> jax.Array:
    """Inverse temperatures ``0 = beta_0 < ... < beta_{K-1} = 1`` for AIS. ``'linear'``: equally spaced.
    ``'sm08'``: the piecewise-linear schedule of Salakhutdinov & Murray (2008, sec. 4.1) scaled to
    ``num_betas`` points, i.e. 500 : 4000 : 10000 of the points spaced uniformly in [0, 0.5], [0.5, 0.9] and
    [0.9, 1.0] (dense near 1, where the intermediate distributions change fastest)."""
    check_choice("AIS schedule", schedule, ("linear", "sm08"))
    require(num_betas >= 4, f"num_betas must be >= 4, got {num_betas}")
    if schedule == "linear":
        return jnp.linspace(0.0, 1.0, num_betas)
    n1 = max(1, round(num_betas * 500 / 14500))
    n2 = max(1, round(num_betas * 4000 / 14500))
    n3 = num_betas - n1 - n2
    return jnp.concatenate([jnp.linspace(0.0, 0.5, n1, endpoint=False), jnp.linspace(0.5, 0.9, n2, endpoint=False),
                            jnp.linspace(0.9, 1.0, n3)])


@functools.partial(jax.jit, static_argnames=("num_chains", "num_betas", "schedule"))
def ais_log_partition(params: Params, key: jax.Array, base_visible_bias: jax.Array, num_chains: int = 100,
                      num_betas: int = 1000, schedule: str = "linear") -> tuple[jax.Array, jax.Array]:
    """Annealed importance sampling estimate of ``log Z`` (Neal 2001; Salakhutdinov & Murray 2008, sec. 4).

    The base model ``A`` has independent visible units with biases ``b_A`` (``base_rate_visible_bias`` of
    the data). Intermediate distributions follow the geometric
    path ``p_beta*(v) = exp((1-beta) b_A^T v + beta b^T v) prod_j (1 + exp(beta (c_j + (v^T W)_j)))`` over
    the ``num_betas`` inverse temperatures of ``ais_betas(num_betas, schedule)``; at ``beta = 0`` its normaliser is
    ``Z_0 = 2^H prod_i (1 + exp(b_A,i))``. Each of ``num_chains`` chains starts with an exact
    sample of ``A``, accumulates ``log w += log p_beta_k*(v) - log p_beta_{k-1}*(v)`` and moves by one
    block Gibbs step that leaves ``p_beta_k`` invariant. Returns ``log Z_0 + log mean(w)`` and its standard
    error ``std(w) / (sqrt(M) mean(w))`` (delta method). ``E[w] = Z/Z_0`` so ``Z`` is unbiased, while the
    ``log Z`` estimate is biased low (Jensen) when the error bar is large.
    """
    require(num_chains >= 2, f"num_chains must be >= 2 for an error bar, got {num_chains}")
    b_a = jnp.asarray(base_visible_bias, jnp.float32)
    w, b, c = params["w"], params["b"], params["c"]
    betas = ais_betas(num_betas, schedule)

    def log_p_star(v: jax.Array, beta: jax.Array) -> jax.Array:
        return v @ ((1.0 - beta) * b_a + beta * b) + jnp.sum(jax.nn.softplus(beta * (v @ w + c)), axis=-1)

    def transition(v: jax.Array, beta: jax.Array, k: jax.Array) -> jax.Array:
        u = jax.random.uniform(k, (num_chains, c.shape[0] + b_a.shape[0]))
        h = (u[:, :c.shape[0]] < jax.nn.sigmoid(beta * (v @ w + c))).astype(jnp.float32)
        logits = (1.0 - beta) * b_a + beta * (b + h @ w.T)
        return (u[:, c.shape[0]:] < jax.nn.sigmoid(logits)).astype(jnp.float32)

    k0, kchain = jax.random.split(key)
    v = jax.random.bernoulli(k0, jax.nn.sigmoid(b_a), (num_chains, b_a.shape[0])).astype(jnp.float32)

    def body(carry: tuple[jax.Array, jax.Array], i: jax.Array) -> tuple[tuple[jax.Array, jax.Array], None]:
        v, log_w = carry
        log_w = log_w + log_p_star(v, betas[i]) - log_p_star(v, betas[i - 1])
        v = transition(v, betas[i], jax.random.fold_in(kchain, i))
        return (v, log_w), None

    (_, log_w), _ = jax.lax.scan(body, (v, jnp.zeros((num_chains,))), jnp.arange(1, num_betas))
    log_z_0 = jnp.sum(jax.nn.softplus(b_a)) + c.shape[0] * jnp.log(2.0)
    log_mean_w = jax.nn.logsumexp(log_w) - jnp.log(num_chains)
    ratio = jnp.exp(log_w - log_mean_w)
    stderr = jnp.std(ratio, ddof=1) / jnp.sqrt(num_chains)
    return log_z_0 + log_mean_w, stderr


@jax.jit
def negative_log_likelihood(params: Params, v: jax.Array, log_z: jax.Array) -> jax.Array:
    """Mean ``-log P(v) = F(v) + log Z`` in nats over the rows of ``v [N, V]``."""
    return jnp.mean(free_energy(params, v)) + log_z


def filters_as_images(params: Params, image_shape: tuple[int, ...]) -> jax.Array:
    """The receptive field of each hidden unit, the column ``W[:, j]`` reshaped to ``image_shape`` and
    min-max scaled to ``[0, 1]`` per filter; returns ``[H, *image_shape]``."""
    w = params["w"]
    size = 1
    for d in image_shape:
        size *= d
    require(size == w.shape[0], f"image_shape {image_shape} has {size} pixels but the RBM has "
            f"{w.shape[0]} visible units")
    f = w.T
    lo, hi = jnp.min(f, axis=1, keepdims=True), jnp.max(f, axis=1, keepdims=True)
    f = (f - lo) / jnp.maximum(hi - lo, 1e-12)
    return f.reshape((w.shape[1], *image_shape))
