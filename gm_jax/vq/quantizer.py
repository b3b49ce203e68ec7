"""Vector quantization (van den Oord et al. 2017, "Neural Discrete Representation Learning").

- Nearest code: ``k(z) = argmin_j ‖z − e_j‖²`` (eq. 1), ``z_q = e_k``.
- Straight-through estimator: the forward pass uses ``z_q``; the backward pass copies the decoder's gradient
  to the encoder output, ``z_q = z + sg[e_k − z]`` (sec. 3.2), so ``∂z_q/∂z = I``.
- Loss (eq. 3): ``‖sg[z] − e‖²`` (codebook) ``+ β ‖z − sg[e]‖²`` (commitment), each a mean over the
  quantized vectors' entries.
- EMA codebook (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019, eqs. 5–7): with ``n_j`` the
  number of vectors assigned to code ``j`` in the batch,
  ``N_j ← γ N_j + (1 − γ) n_j``, ``m_j ← γ m_j + (1 − γ) Σ_{i: k_i = j} z_i``, and with Laplace smoothing
  ``Ñ_j = (N_j + ε) / (Σ N + K ε) · Σ N``, ``e_j = m_j / Ñ_j``.
- Codebook usage ``p_j = n_j / Σ n`` and perplexity ``exp(−Σ_j p_j log p_j)`` (K when all codes are used
  equally, 1 when one code takes everything).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require


class EmaCodebookState(NamedTuple):
    """``cluster_size`` ``N [K]``, ``embed_sum`` ``m [K, D]`` and the codebook ``e = m / Ñ`` ``[K, D]``."""

    cluster_size: jax.Array
    embed_sum: jax.Array
    codebook: jax.Array


def _check_dims(z: jax.Array, codebook: jax.Array) -> None:
    require(codebook.ndim == 2, f"codebook must be [num_codes, code_dim], got shape {tuple(codebook.shape)}")
    require(z.shape[-1] == codebook.shape[-1],
            f"encoder output has code dim {z.shape[-1]} but the codebook has {codebook.shape[-1]}; "
            "make model.code_dim match the encoder's last channel count")


def code_distances(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """Squared distances ``‖z − e_j‖² = ‖z‖² − 2 z·e_j + ‖e_j‖²`` ``[..., K]`` (van den Oord et al. 2017,
    eq. 1)."""
    _check_dims(z, codebook)
    return (jnp.sum(z**2, -1, keepdims=True) - 2.0 * z @ codebook.T + jnp.sum(codebook**2, -1))


def nearest_code(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the nearest code ``k = argmin_j ‖z − e_j‖²`` (van den Oord et al. 2017, eq. 1), int32
    ``[...]`` for ``z [..., D]``."""
    return jnp.argmin(code_distances(z, codebook), axis=-1).astype(jnp.int32)


def quantize(z: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(z_q_st, e_k, k)``: the straight-through output ``z + sg[e_k − z]`` (value ``e_k``, gradient the
    identity on ``z``; van den Oord et al. 2017, sec. 3.2), the selected codes ``e_k`` (differentiable
    w.r.t. the codebook) and the indices ``k``."""
    k = nearest_code(z, codebook)
    e_k = codebook[k]
    return z + jax.lax.stop_gradient(e_k - z), e_k, k


def vq_losses(z: jax.Array, e_k: jax.Array, beta: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(codebook_loss, commitment_loss)`` = ``(mean ‖sg[z] − e_k‖², β · mean ‖z − sg[e_k]‖²)``
    (van den Oord et al. 2017, eq. 3; means over all entries)."""
    codebook_loss = jnp.mean((jax.lax.stop_gradient(z) - e_k) ** 2)
    commitment = beta * jnp.mean((z - jax.lax.stop_gradient(e_k)) ** 2)
    return codebook_loss, commitment


def ema_codebook_init(codebook: jax.Array) -> EmaCodebookState:
    """EMA state whose codebook is ``codebook``: ``N_j = 1``, ``m_j = e_j``."""
    return EmaCodebookState(jnp.ones(codebook.shape[0], codebook.dtype), codebook, codebook)


def ema_codebook_update(state: EmaCodebookState, z: jax.Array, k: jax.Array, decay: float | jax.Array,
                        epsilon: float = 1e-5) -> EmaCodebookState:
    """One EMA codebook step (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019, eqs. 5–7):
    ``N ← γN + (1−γ)n``, ``m ← γm + (1−γ)Σ z``, ``e = m / ((N + ε)/(ΣN + Kε)·ΣN)``. ``z [..., D]`` are
    the encoder outputs, ``k [...]`` their code indices."""
    num_codes = state.codebook.shape[0]
    _check_dims(z, state.codebook)
    flat_z = z.reshape(-1, z.shape[-1])
    one_hot = jax.nn.one_hot(k.reshape(-1), num_codes, dtype=flat_z.dtype)
    cluster_size = decay * state.cluster_size + (1.0 - decay) * one_hot.sum(0)
    embed_sum = decay * state.embed_sum + (1.0 - decay) * one_hot.T @ flat_z
    total = cluster_size.sum()
    smoothed = (cluster_size + epsilon) / (total + num_codes * epsilon) * total
    return EmaCodebookState(cluster_size, embed_sum, embed_sum / smoothed[:, None])


def code_usage(k: jax.Array, num_codes: int) -> jax.Array:
    """Fraction of vectors assigned to each code, ``p_j = n_j / Σ n`` ``[K]``."""
    counts = jnp.bincount(k.reshape(-1), length=num_codes)
    return counts / jnp.maximum(counts.sum(), 1)


def codebook_perplexity(k: jax.Array, num_codes: int) -> jax.Array:
    """``exp(H(p)) = exp(−Σ_j p_j log p_j)`` of the code usage ``p`` (``0 log 0 = 0``): K for uniform
    usage, 1 for a collapsed codebook."""
    p = code_usage(k, num_codes)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))
