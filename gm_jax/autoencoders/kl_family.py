"""The first stage of latent diffusion as a :class:`gm_jax.core.Family`: the KL-regularized autoencoder
:class:`gm_jax.nn.kl_autoencoder.KLAutoencoder` trained on reconstruction plus a small KL term (Rombach et al.
2022, Sec. 3.1; their KL-f8 models weigh the KL by 1e-6).

Convention (shared with any family that reuses this run): the network sees and produces images in [-1, 1].
Data in ``spec.value_range = (lo, hi)`` enters as ``u = 2 (x − lo)/(hi − lo) − 1`` and a decoded ``û`` leaves
as ``x̂ = lo + (û + 1)(hi − lo)/2`` (``to_network`` / ``from_network``:
:func:`gm_jax.core.family.to_symmetric` and its inverse).

Parameters: ``params = {"autoencoder": variables["params"]}`` of ``KLAutoencoder(image_channels=C,
latent_channels=model.latent_channels, channels=model.channels)``, i.e. ``params["autoencoder"]["encoder"]``
and ``params["autoencoder"]["decoder"]``; a later stage applies the module with ``{"params":
params["autoencoder"]}``.

Loss, per batch of B images with D = H·W·C pixel values each, u the network-space image, z = μ + σ ⊙ ε and
ℓ(a, b) = |a − b| ('l1') or (a − b)² ('mse')::

    L = (1/B) Σ_b [ (1/D) Σ_i ℓ(decoder(z_b)_i, u_bi) ] + kl_weight · (1/B) Σ_b KL_b / D,
    KL_b = ½ Σ_j (μ_bj² + σ_bj² − 1 − log σ_bj²)   (nats, summed over the latent entries j)

which is the objective of the reference implementation (per-image sums of the pixel loss and of the KL,
averaged over the batch, KL weight 1e-6) divided by D, so ``kl_weight`` keeps its meaning; the perceptual
and adversarial terms of the paper are not used.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gm_jax.core import Batch, DataSpec, Family, Metrics, PyTree, TrainState, apply_gradients
from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import FamilyInputs
from gm_jax.core.family import from_symmetric as from_network
from gm_jax.core.family import to_symmetric as to_network
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import Option
from gm_jax.nn.kl_autoencoder import KLAutoencoder, kl_loss, latent_scale_factor, reparameterize
from gm_jax.nn.precision import compute_dtype

RECON_LOSSES = ("l1", "mse")
SAMPLE_OPTIONS: tuple[Option, ...] = ()


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` (``latent_channels``, ``channels``, ``dtype`` are KLAutoencoder's own).

    latent_channels: channels of the latent grid; channels: encoder widths, one stride-2 level each
    ((32, 64): 28×28 → 7×7); kl_weight: weight of the KL term in the loss of the module docstring (1e-6 as in
    Rombach et al.'s KL-f8 autoencoders); recon_loss: 'l1' (as in the reference implementation) or 'mse';
    dtype: computation dtype 'float32' | 'bfloat16'.
    """
    return ml_collections.ConfigDict(dict(
        family="kl_autoencoder", latent_channels=4, channels=(32, 64), kl_weight=1e-6, recon_loss="l1",
        dtype="float32"))


def psnr(mse_unit_range: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio in dB of a mean squared error on images in [0, 1]: ``10 log10(1 / MSE)``."""
    return 10.0 * jnp.log10(1.0 / jnp.asarray(mse_unit_range, jnp.float32))


def check_config(m: Any, spec: DataSpec) -> None:
    """Images whose sides the stride-2 levels divide, a known loss, a KL weight >= 0."""
    check_choice("model.family", m.family, ("kl_autoencoder",))
    check_choice("model.recon_loss", m.recon_loss, RECON_LOSSES)
    require(spec.is_image, f"the KL autoencoder models images [H, W, C], got example shape {spec.shape}")
    require(len(m.channels) >= 1 and all(int(c) >= 1 for c in m.channels),
            f"model.channels must list at least one positive width, e.g. (32, 64), got {tuple(m.channels)}")
    require(int(m.latent_channels) >= 1, f"model.latent_channels must be >= 1, got {m.latent_channels}")
    require(float(m.kl_weight) >= 0, f"model.kl_weight must be >= 0, got {m.kl_weight}")
    factor = 2 ** len(m.channels)
    require(spec.shape[0] % factor == 0 and spec.shape[1] % factor == 0,
            f"image size {tuple(spec.shape[:2])} must be divisible by 2^len(model.channels) = {factor}; "
            "use fewer model.channels")


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces of the family: config, data description, module, optimizer."""

    m: Any
    spec: DataSpec
    net: KLAutoencoder
    tx: Any
    ema_decay: float

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        factor = 2 ** len(self.m.channels)
        return (self.spec.shape[0] // factor, self.spec.shape[1] // factor, int(self.m.latent_channels))


def init_state(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """``params = {"autoencoder": ...}`` initialized on the example batch, the optimizer state, the EMA copy."""
    x = to_network(example_batch["x"], s.spec.value_range)
    params = {"autoencoder": s.net.init(key, x)["params"]}
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def pixel_loss(s: Setup, recon: jax.Array, u: jax.Array) -> jax.Array:
    """Mean over the pixel values of each image of ℓ(û, u), shape [B]."""
    diff = recon - u
    per = jnp.abs(diff) if s.m.recon_loss == "l1" else jnp.square(diff)
    return jnp.mean(per.reshape(per.shape[0], -1), axis=-1)


def loss_fn(s: Setup, params: PyTree, x: jax.Array, key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss of the module docstring on data-space images ``x``, and ``recon`` (first term), ``kl``
    (mean KL per image, nats) and ``loss``."""
    u = to_network(x, s.spec.value_range)
    variables = {"params": params["autoencoder"]}
    mean, logvar = s.net.apply(variables, u, method="encode")
    recon_u = s.net.apply(variables, reparameterize(mean, logvar, key), method="decode")
    recon = jnp.mean(pixel_loss(s, recon_u, u))
    kl = jnp.mean(kl_loss(mean, logvar))
    loss = recon + float(s.m.kl_weight) * kl / math.prod(s.spec.shape)
    return loss, {"loss": loss, "recon": recon, "kl": kl}


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One optimizer step on :func:`loss_fn`."""
    grads, metrics = jax.grad(partial(loss_fn, s), has_aux=True)(state.params, batch["x"], key)
    return apply_gradients(state, s.tx, grads, s.ema_decay), metrics


def evaluate(s: Setup, params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
    """Deterministic reconstructions ``x̂ = decoder(μ)`` (clipped to the data range) of the batch.

    recon_mse: mean squared error with images mapped to [0, 1]; psnr: ``10 log10(1 / recon_mse)`` dB of the
    batch's mean error; kl: mean KL(q(z|x) ‖ N(0, I)) per image, nats; latent_std: std of μ over every entry of
    the batch; latent_scale_factor: its inverse, the factor that gives a latent diffusion model unit-variance
    latents (Rombach et al. 2022, Sec. 4.3.2 and the appendix)."""
    del key  # deterministic
    u = to_network(batch["x"], s.spec.value_range)
    variables = {"params": params["autoencoder"]}
    mean, logvar = s.net.apply(variables, u, method="encode")
    recon_u = jnp.clip(s.net.apply(variables, mean, method="decode"), -1.0, 1.0)
    mse = jnp.mean(jnp.square(0.5 * (recon_u - u)))  # [-1, 1] → [0, 1] halves the differences
    return {"recon_mse": mse, "psnr": psnr(mse), "kl": jnp.mean(kl_loss(mean, logvar)),
            "latent_std": jnp.std(mean), "latent_scale_factor": latent_scale_factor(mean)}


def draw(s: Setup, params: PyTree, key: jax.Array, num: int) -> jax.Array:
    """``decoder(z)``, ``z ~ N(0, I)`` of the latent shape, in ``spec.value_range`` (clipped)."""
    z = jax.random.normal(key, (num, *s.latent_shape), jnp.float32)
    u = s.net.apply({"params": params["autoencoder"]}, z, method="decode")
    return jnp.clip(from_network(u, s.spec.value_range), *s.spec.value_range)


def sample(s: Setup, jitted_draw: Any, params: PyTree, key: jax.Array, num: int) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` decodings of prior draws z ~ N(0, I) (a KL autoencoder with a tiny KL weight is a poor
    generator; useful to look at), ``info = {"nfe": 1}``."""
    return jitted_draw(params, key, int(num)), {"nfe": 1}


def reconstruct(s: Setup, params: PyTree, x: jax.Array) -> jax.Array:
    """``x̂ = decoder(μ(x))`` in ``spec.value_range`` (clipped) for data-space images ``x``."""
    variables = {"params": params["autoencoder"]}
    mean, _ = s.net.apply(variables, to_network(x, s.spec.value_range), method="encode")
    u = s.net.apply(variables, mean, method="decode")
    return jnp.clip(from_network(u, s.spec.value_range), *s.spec.value_range)


def build_setup(config: ml_collections.ConfigDict, spec: DataSpec) -> Setup:
    """The validated :class:`Setup` of ``config.model`` and ``config.optim`` for data ``spec``."""
    m = config.model
    check_config(m, spec)
    net = KLAutoencoder(image_channels=int(spec.shape[-1]), latent_channels=int(m.latent_channels),
                        channels=tuple(int(c) for c in m.channels), dtype=compute_dtype(m))
    return Setup(m, spec, net, make_optimizer(config.optim), float(config.optim.get("ema_decay", 0.0)))


def make_family(config: ml_collections.ConfigDict, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()
                ) -> Family:
    """The KL-autoencoder family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``."""
    del inputs  # no evaluation images or upstream runs are needed
    s = build_setup(config, spec)
    jitted_draw = jax.jit(partial(draw, s), static_argnames="num")
    return Family(name="kl_autoencoder", init=partial(init_state, s), train_step=partial(train_step, s),
                  sample=partial(sample, s, jitted_draw), evaluate=jax.jit(partial(evaluate, s)),
                  sample_options=SAMPLE_OPTIONS)


__all__ = ["SAMPLE_OPTIONS", "Setup", "build_setup", "evaluate", "from_network", "loss_fn", "make_family",
           "model_defaults", "psnr", "reconstruct", "to_network", "train_step"]
