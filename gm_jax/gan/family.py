"""The GAN family: alternating discriminator / generator updates behind the common Family protocol.

``params``, ``opt_state`` and ``ema_params`` are dicts ``{"generator": ..., "discriminator": ...}``. One
``train_step`` runs ``n_critic`` discriminator updates (each on the same real batch with fresh latents,
fused with ``lax.scan``), then one generator update, and increments ``state.step`` once. Learning rates of
the two networks may differ (TTUR, Heusel et al. 2017). Covered architectures: DCGAN for images
(unconditional, or class-conditional with a projection discriminator) and an MLP GAN for vector data.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import Batch, DataSpec, Family, Metrics
from gm_jax.core.optim import make_optimizer
from gm_jax.core.state import TrainState, ema_update
from gm_jax.gan import model as gan_model
from gm_jax.gan.losses import LOSSES, get_loss
from gm_jax.gan.penalties import gradient_penalty, r1_penalty

NETS = ("generator", "discriminator")


def model_defaults() -> ml_collections.ConfigDict:
    """Defaults of ``config.model`` for the GAN family.

    architecture: 'dcgan' (images) or 'mlp' (vectors); loss: a name in ``gm_jax.gan.losses.LOSSES``;
    n_critic: discriminator steps per generator step; gp_weight: WGAN-GP lambda; r1_weight: R1 gamma;
    generator_lr / discriminator_lr: override ``config.optim.learning_rate`` when > 0 (TTUR);
    conditional: use labels (projection discriminator).
    """
    return ml_collections.ConfigDict({
        "family": "gan",
        "architecture": "dcgan",
        "latent_dim": 64,
        "features": 32,
        "hidden": 128,
        "depth": 3,
        "conditional": False,
        "embed_dim": 32,
        "generator_normalization": "batch",
        "discriminator_normalization": "none",
        "loss": "non_saturating",
        "n_critic": 1,
        "gp_weight": 0.0,
        "r1_weight": 0.0,
        "generator_lr": 0.0,
        "discriminator_lr": 0.0,
    })


def optim_defaults() -> ml_collections.ConfigDict:
    """GAN optimiser defaults (Radford et al. 2016: Adam, learning rate 2e-4, beta1 = 0.5); ``ema_decay``
    is the EMA of both networks' parameters (0 = off), as in every family."""
    return ml_collections.ConfigDict({"name": "adam", "learning_rate": 2e-4, "b1": 0.5, "b2": 0.999,
                                      "grad_clip": 0.0, "warmup_steps": 0, "schedule": "constant",
                                      "ema_decay": 0.0})


def default_config() -> ml_collections.ConfigDict:
    """A complete config ``{"model": model_defaults(), "optim": optim_defaults()}``."""
    return ml_collections.ConfigDict({"model": model_defaults(), "optim": optim_defaults()})


def _optimizer(optim_cfg: Any, learning_rate: float) -> optax.GradientTransformation:
    cfg = ml_collections.ConfigDict(dict(optim_cfg.items()))
    if learning_rate > 0:
        cfg.learning_rate = float(learning_rate)
    return make_optimizer(cfg)


def _check_config(m: Any, spec: DataSpec) -> None:
    check_choice("model.architecture", m.architecture, ("dcgan", "mlp"))
    check_choice("model.loss", m.loss, LOSSES)
    require(int(m.latent_dim) >= 1, f"model.latent_dim must be >= 1, got {m.latent_dim}")
    require(int(m.n_critic) >= 1, f"model.n_critic must be >= 1, got {m.n_critic}")
    require(float(m.gp_weight) >= 0, f"model.gp_weight must be >= 0 (0 disables), got {m.gp_weight}")
    require(float(m.r1_weight) >= 0, f"model.r1_weight must be >= 0 (0 disables), got {m.r1_weight}")
    require(m.generator_lr >= 0 and m.discriminator_lr >= 0,
            "model.generator_lr / discriminator_lr must be >= 0 (0 uses optim.learning_rate)")
    if m.architecture == "dcgan":
        require(spec.is_image, f"architecture 'dcgan' needs image data [H, W, C], got shape {spec.shape}; "
                "use architecture 'mlp'")
        check_choice("model.generator_normalization", m.generator_normalization, gan_model.NORMALIZATIONS)
        check_choice("model.discriminator_normalization", m.discriminator_normalization,
                     gan_model.NORMALIZATIONS)
        if m.gp_weight > 0 or m.r1_weight > 0:
            require(m.discriminator_normalization != "batch",
                    "gradient penalties need per-example critics; set model.discriminator_normalization "
                    "to 'layer', 'instance' or 'none'")
    else:
        require(len(spec.shape) == 1, f"architecture 'mlp' needs vector data [D], got shape {spec.shape}")
    if m.conditional:
        require(spec.num_classes > 0, "model.conditional needs a labelled dataset (spec.num_classes > 0)")
        require(m.architecture == "dcgan", "model.conditional is supported with architecture 'dcgan' only")


def make_networks(m: Any, spec: DataSpec) -> tuple[Any, Any]:
    """The generator and discriminator modules described by ``config.model`` for data ``spec``."""
    if m.architecture == "mlp":
        return (gan_model.MLPGenerator(spec.shape[0], m.hidden, m.depth),
                gan_model.MLPDiscriminator(m.hidden, m.depth))
    classes = spec.num_classes if m.conditional else 0
    gen = gan_model.DCGANGenerator(tuple(spec.shape), m.features, classes, m.embed_dim,
                                   m.generator_normalization)
    disc = gan_model.DCGANDiscriminator(m.features, classes, m.discriminator_normalization)
    return gen, disc


def make_family(config: Any, spec: DataSpec) -> Family:
    """Build the GAN family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``.

    Each step: for ``n_critic`` iterations the discriminator minimises the named loss's ``d_loss`` (Goodfellow
    et al. 2014, Alg. 1) plus ``gp_weight * gradient_penalty`` (Gulrajani et al. 2017, eq. 3) and
    ``r1_weight * r1_penalty`` (Mescheder et al. 2018, eq. 9); then the generator minimises ``g_loss``.
    Conditional models give the generated batch the labels of the real batch. ``model.task`` other than
    'generate' ('pix2pix', 'cyclegan', 'srgan') builds the image-to-image family of
    :mod:`gm_jax.gan.image_to_image` instead.
    """
    m = config.model
    if m.get("task", "generate") != "generate":  # Pix2Pix, CycleGAN, SRGAN: their own step and sampler
        from gm_jax.gan import image_to_image

        return image_to_image.make_family(config, spec)
    _check_config(m, spec)
    gen, disc = make_networks(m, spec)
    loss_fn = get_loss(m.loss)
    latent_dim, n_critic = int(m.latent_dim), int(m.n_critic)
    gp_weight, r1_weight = float(m.gp_weight), float(m.r1_weight)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    require(0.0 <= ema_decay < 1.0, f"optim.ema_decay must be in [0, 1), got {ema_decay}")
    conditional = bool(m.conditional)
    txs = {"generator": _optimizer(config.optim, m.generator_lr),
           "discriminator": _optimizer(config.optim, m.discriminator_lr)}

    def labels_of(batch: Batch) -> jax.Array | None:
        if not conditional:
            return None
        require("label" in batch, "model.conditional needs batches with a 'label' entry")
        return batch["label"]

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        x = jnp.asarray(example_batch["x"])
        require(tuple(x.shape[1:]) == tuple(spec.shape),
                f"batch x has example shape {tuple(x.shape[1:])}, the spec says {tuple(spec.shape)}")
        label = labels_of(example_batch)
        k_gen, k_disc = jax.random.split(jax.random.fold_in(key, 0))
        z = jnp.zeros((x.shape[0], latent_dim), x.dtype)
        params = {"generator": gen.init(k_gen, z, label)["params"],
                  "discriminator": disc.init(k_disc, x, label)["params"]}
        opt_state = {name: txs[name].init(params[name]) for name in NETS}
        ema = jax.tree.map(jnp.copy, params) if ema_decay > 0 else None
        return TrainState(step=jnp.zeros((), jnp.int32), rng=key, params=params, opt_state=opt_state,
                          ema_params=ema, extra=None)

    def generate(g_params: Any, z: jax.Array, label: jax.Array | None) -> jax.Array:
        return gen.apply({"params": g_params}, z, label)

    def critic(d_params: Any, x: jax.Array, label: jax.Array | None) -> jax.Array:
        return disc.apply({"params": d_params}, x, label)

    def discriminator_loss(d_params: Any, g_params: Any, real: jax.Array, label: jax.Array | None,
                           key: jax.Array) -> tuple[jax.Array, Metrics]:
        k_z, k_gp = jax.random.split(key)
        z = jax.random.normal(k_z, (real.shape[0], latent_dim), real.dtype)
        fake = jax.lax.stop_gradient(generate(g_params, z, label))
        real_logits, fake_logits = critic(d_params, real, label), critic(d_params, fake, label)
        out = loss_fn(real_logits, fake_logits)
        total = out.d_loss
        metrics = {"d_loss": out.d_loss, "d_real": out.d_real, "d_fake": out.d_fake,
                   "real_logit": jnp.mean(real_logits), "fake_logit": jnp.mean(fake_logits)}
        if gp_weight > 0:
            gp = gradient_penalty(lambda v: critic(d_params, v, label), real, fake, k_gp)
            total, metrics["gradient_penalty"] = total + gp_weight * gp, gp
        if r1_weight > 0:
            r1 = r1_penalty(lambda v: critic(d_params, v, label), real)
            total, metrics["r1_penalty"] = total + r1_weight * r1, r1
        return total, metrics

    def generator_loss(g_params: Any, d_params: Any, batch_size: int, label: jax.Array | None,
                       key: jax.Array, dtype: Any) -> jax.Array:
        z = jax.random.normal(key, (batch_size, latent_dim), dtype)
        fake_logits = critic(d_params, generate(g_params, z, label), label)
        return loss_fn(jnp.zeros_like(fake_logits), fake_logits).g_loss

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        real, label = batch["x"], labels_of(batch)
        k_disc, k_gen = jax.random.split(key)
        g_params = state.params["generator"]

        def critic_update(carry: tuple[Any, Any], k: jax.Array) -> tuple[tuple[Any, Any], Metrics]:
            d_params, d_opt = carry
            grads, metrics = jax.grad(discriminator_loss, has_aux=True)(d_params, g_params, real, label, k)
            updates, d_opt = txs["discriminator"].update(grads, d_opt, d_params)
            return (optax.apply_updates(d_params, updates), d_opt), metrics

        (d_params, d_opt), d_metrics = jax.lax.scan(
            critic_update, (state.params["discriminator"], state.opt_state["discriminator"]),
            jax.random.split(k_disc, n_critic))
        g_loss, g_grads = jax.value_and_grad(generator_loss)(g_params, d_params, real.shape[0], label, k_gen,
                                                             real.dtype)
        g_updates, g_opt = txs["generator"].update(g_grads, state.opt_state["generator"], g_params)
        params = {"generator": optax.apply_updates(g_params, g_updates), "discriminator": d_params}
        ema = state.ema_params
        if ema is not None:
            ema = ema_update(ema, params, ema_decay)
        metrics = {name: value[-1] for name, value in d_metrics.items()}
        metrics["g_loss"] = g_loss
        new_state = state.replace(step=state.step + 1, params=params, ema_params=ema,
                                  opt_state={"generator": g_opt, "discriminator": d_opt})
        return new_state, metrics

    def _sample(g_params: Any, key: jax.Array, num: int, label: jax.Array | None) -> jax.Array:
        return generate(g_params, jax.random.normal(key, (num, latent_dim)), label)

    sample_jit = jax.jit(_sample, static_argnums=2)

    def sample(params: Any, key: jax.Array, num: int, label: int | jax.Array | None = None
               ) -> tuple[jax.Array, dict[str, Any]]:
        """``num`` samples ``G(z)``, ``z ~ N(0, I)`` from ``key``; ``label`` (int or ``[num]``, random when
        None) for conditional models. One network evaluation: ``info["nfe"] == 1``."""
        require(int(num) >= 1, f"num must be >= 1, got {num}")
        k_z, k_label = jax.random.split(key)
        info: dict[str, Any] = {"nfe": 1}
        labels = None
        if conditional:
            if label is None:
                labels = jax.random.randint(k_label, (num,), 0, spec.num_classes)
            else:
                labels = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (num,)) if jnp.ndim(label) == 0 \
                    else jnp.asarray(label, jnp.int32)
                require(labels.shape == (num,), f"label must be an int or an array [{num}], got shape "
                        f"{tuple(labels.shape)}")
                require(bool(jnp.all((labels >= 0) & (labels < spec.num_classes))),
                        f"labels must lie in [0, {spec.num_classes}); got values outside")
            info["label"] = labels
        else:
            require(label is None, "this GAN is unconditional; sample without label")
        return sample_jit(params["generator"], k_z, int(num), labels), info

    return Family(name="gan", init=init, train_step=train_step, sample=sample)
