"""A linear-Gaussian latent model whose posterior is diagonal and known in closed form (shared by tests).

p(z) = N(0, I_2), p(x|z) = N(W z + b, s² I_3) with W = Q diag(a) (orthonormal columns Q), so that
p(z|x) = N(Σ Wᵀ(x − b)/s², Σ) with Σ = diag(1 / (1 + a²/s²)) is diagonal and p(x) = N(b, W Wᵀ + s² I).
"""

import jax.numpy as jnp
import numpy as np
from scipy import stats

from gm_jax.autoencoders import losses

Q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 2)))
A = np.array([1.5, 0.7])
W = Q * A
B = np.array([0.3, -0.2, 0.5])
S2 = 0.25
POST_VAR = 1.0 / (1.0 + A**2 / S2)


def log_marginal(x: np.ndarray) -> np.ndarray:
    return stats.multivariate_normal(B, W @ W.T + S2 * np.eye(3)).logpdf(x)


def posterior(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = ((x - B) @ W / S2) * POST_VAR
    return mean, np.broadcast_to(POST_VAR, mean.shape)


def encode_exact(x):
    mean = ((x - jnp.asarray(B, jnp.float32)) @ jnp.asarray(W, jnp.float32) / S2) * jnp.asarray(POST_VAR,
                                                                                              jnp.float32)
    return mean, jnp.broadcast_to(jnp.log(jnp.asarray(POST_VAR, jnp.float32)), mean.shape)


def encode_off(x, shift=0.5, var_scale=0.3):
    """A deliberately wrong q: mean shifted, variance shrunk."""
    mean, logvar = encode_exact(x)
    return mean + shift, logvar + jnp.log(var_scale)


def log_likelihood(x, z):
    mean = z @ jnp.asarray(W.T, jnp.float32) + jnp.asarray(B, jnp.float32)
    return losses.gaussian_log_likelihood(x, mean, jnp.log(jnp.float32(S2)), event_ndim=1)


def sample_x(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    return (z @ W.T + B + np.sqrt(S2) * rng.normal(size=(n, 3))).astype(np.float32)
