"""The GAN family: alternating discriminator / generator updates behind the common Family protocol.

``params``, ``opt_state`` and ``ema_params`` are dicts ``{"generator": ..., "discriminator": ...}``. One
``train_step`` runs ``n_critic`` discriminator updates (each on the same real batch with fresh latents,
fused with ``lax.scan``), then one generator update, and increments ``state.step`` once. Learning rates of
the two networks may differ (TTUR, Heusel et al. 2017). Covered architectures: DCGAN for images
(unconditional, or class-conditional with a projection discriminator), a StyleGAN2-style generator
(``architecture='stylegan'``: mapping network, modulated/demodulated convolutions, noise inputs, style-mixing
regularisation) against the DCGAN discriminator, and an MLP GAN for vector data. With
``discriminator_normalization='spectral'`` the discriminator's power-iteration vectors live in
``state.extra["spectral"]``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gm_jax.core.errors import check_choice, require
from gm_jax.core.family import Batch, DataSpec, Family, FamilyInputs, Metrics
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import Option, merge_options
from gm_jax.core.state import TrainState, ema_update
from gm_jax.gan import image_to_image
from gm_jax.gan.losses import LOSSES, GANLoss, get_loss
from gm_jax.gan.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gm_jax.gan.nets.mlp import MLPDiscriminator, MLPGenerator
from gm_jax.gan.nets.norms import DISCRIMINATOR_NORMALIZATIONS, NORMALIZATIONS
from gm_jax.gan.nets.stylegan import MappingNetwork, StyleGANGenerator, num_styles, synthesis_base
from gm_jax.gan.penalties import gradient_penalty, r1_penalty

NETS = ("generator", "discriminator")
ARCHITECTURES = ("dcgan", "stylegan", "mlp")
LABEL = Option("label", "int", "class of every sample (class-conditional GANs; none: a random class each)", low=0)
TRUNCATION = Option("truncation", "float", "StyleGAN truncation psi: pull every style towards the mean style "
                    "(1: none; none: no truncation)", low=0.0, high=1.0)
# Every sampling option of every GAN family, the image-to-image ones included (``source`` is an array, a
# Python-only keyword of their ``sample``).
SAMPLE_OPTIONS: tuple[Option, ...] = merge_options((LABEL, TRUNCATION), image_to_image.SAMPLE_OPTIONS)
# Restoration by the image-to-image generators (Pix2Pix inpainting, SRGAN): method -> its options' names.
RESTORE_OPTIONS: tuple[Option, ...] = image_to_image.RESTORE_OPTIONS
RESTORE_METHODS: dict[str, list[str]] = image_to_image.RESTORE_METHODS


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


def stylegan_defaults() -> ml_collections.ConfigDict:
    """Extra ``config.model`` fields of ``architecture='stylegan'`` (merge them into :func:`model_defaults`;
    absent fields take these values). w_dim: size of w; mapping_layers: depth of the mapping network
    (Karras et al. 2019 use 8); style_mixing: probability that a generated training image mixes two
    latents at a random layer (0.9 in the paper, Sec. 3.1); truncation_samples: latents whose mean style is
    ``w_avg`` for truncated sampling; discriminator_features: width of the DCGAN discriminator (0: the
    generator's ``features``); minibatch_std: the discriminator's minibatch-stddev channel (Karras et al.
    2018). Also read when present, for any image architecture: ``spectral_iters`` (power iterations per step
    of ``discriminator_normalization='spectral'``, default 1) and ``minibatch_std`` (default false)."""
    return ml_collections.ConfigDict({"w_dim": 64, "mapping_layers": 4, "style_mixing": 0.9,
                                      "truncation_samples": 4096, "discriminator_features": 0,
                                      "minibatch_std": True})


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
    check_choice("model.architecture", m.architecture, ARCHITECTURES)
    check_choice("model.loss", m.loss, LOSSES)
    require(int(m.latent_dim) >= 1, f"model.latent_dim must be >= 1, got {m.latent_dim}")
    require(int(m.n_critic) >= 1, f"model.n_critic must be >= 1, got {m.n_critic}")
    require(float(m.gp_weight) >= 0, f"model.gp_weight must be >= 0 (0 disables), got {m.gp_weight}")
    require(float(m.r1_weight) >= 0, f"model.r1_weight must be >= 0 (0 disables), got {m.r1_weight}")
    require(m.generator_lr >= 0 and m.discriminator_lr >= 0,
            "model.generator_lr / discriminator_lr must be >= 0 (0 uses optim.learning_rate)")
    if m.architecture in ("dcgan", "stylegan"):
        require(spec.is_image, f"architecture {m.architecture!r} needs image data [H, W, C], got shape "
                f"{spec.shape}; use architecture 'mlp'")
        check_choice("model.generator_normalization", m.generator_normalization, NORMALIZATIONS)
        check_choice("model.discriminator_normalization", m.discriminator_normalization,
                     DISCRIMINATOR_NORMALIZATIONS)
        iters = int(m.get("spectral_iters", 1))
        require(iters >= 1, f"model.spectral_iters (power iterations per step) must be >= 1, got {iters}")
        if m.gp_weight > 0 or m.r1_weight > 0:
            require(not m.get("minibatch_std", False), "gradient penalties need per-example critics; set "
                    "model.minibatch_std=false")
            require(m.discriminator_normalization != "batch",
                    "gradient penalties need per-example critics; set model.discriminator_normalization "
                    "to 'layer', 'instance' or 'none'")
    else:
        require(len(spec.shape) == 1, f"architecture 'mlp' needs vector data [D], got shape {spec.shape}")
    if m.conditional:
        require(spec.num_classes > 0, "model.conditional needs a labelled dataset (spec.num_classes > 0)")
        require(m.architecture == "dcgan", "model.conditional is supported with architecture 'dcgan' only")
    if m.architecture == "stylegan":
        st = _stylegan_fields(m)
        require(spec.shape[0] == spec.shape[1], f"architecture 'stylegan' needs square images, got {spec.shape}")
        synthesis_base(spec.shape[0])
        require(0.0 <= st.style_mixing <= 1.0, f"model.style_mixing must be a probability in [0, 1], got "
                f"{st.style_mixing}")
        require(int(st.w_dim) >= 1 and int(st.mapping_layers) >= 1 and int(st.truncation_samples) >= 1,
                "model.w_dim, model.mapping_layers and model.truncation_samples must be >= 1")


def _stylegan_fields(m: Any) -> ml_collections.ConfigDict:
    """The :func:`stylegan_defaults` fields, overridden by those present in ``config.model``."""
    out = stylegan_defaults()
    for name in out:
        if name in m:
            out[name] = m[name]
    return out



def make_networks(m: Any, spec: DataSpec) -> tuple[Any, Any]:
    """The generator and discriminator modules described by ``config.model`` for data ``spec``."""
    if m.architecture == "mlp":
        return MLPGenerator(spec.shape[0], m.hidden, m.depth), MLPDiscriminator(m.hidden, m.depth)
    classes = spec.num_classes if m.conditional else 0
    if m.architecture == "stylegan":
        st = _stylegan_fields(m)
        gen = StyleGANGenerator(int(spec.shape[0]), int(spec.shape[-1]), int(m.features), int(st.w_dim),
                                int(st.mapping_layers))
    else:
        gen = DCGANGenerator(tuple(spec.shape), m.features, classes, m.embed_dim, m.generator_normalization)
    d_features = int(m.get("discriminator_features", 0)) or int(m.features)
    disc = DCGANDiscriminator(d_features, classes, m.discriminator_normalization,
                              int(m.get("spectral_iters", 1)), bool(m.get("minibatch_std", False)))
    return gen, disc


@dataclasses.dataclass(frozen=True)
class Setup:
    """The static configuration the GAN family's functions share (built once by :func:`build_setup`).

    num_classes: classes of a conditional GAN (0: unconditional); spectral: the discriminator keeps
    power-iteration vectors in ``state.extra["spectral"]``; n_styles: StyleGAN's per-layer styles (0 for
    the other architectures); mixing_prob, truncation_samples, w_dim, mapping_layers: StyleGAN fields."""

    spec: DataSpec
    gen: Any
    disc: Any
    loss: Callable[[jax.Array, jax.Array], GANLoss]
    txs: dict[str, optax.GradientTransformation]
    latent_dim: int
    n_critic: int
    gp_weight: float
    r1_weight: float
    ema_decay: float
    num_classes: int
    stylegan: bool
    spectral: bool
    n_styles: int
    mixing_prob: float
    truncation_samples: int
    w_dim: int
    mapping_layers: int


def build_setup(config: Any, spec: DataSpec) -> Setup:
    """Check ``config.model`` and ``config.optim`` and collect what the family's functions need."""
    m = config.model
    _check_config(m, spec)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    require(0.0 <= ema_decay < 1.0, f"optim.ema_decay must be in [0, 1), got {ema_decay}")
    gen, disc = make_networks(m, spec)
    st = _stylegan_fields(m)
    stylegan = m.architecture == "stylegan"
    return Setup(
        spec=spec, gen=gen, disc=disc, loss=get_loss(m.loss),
        txs={"generator": _optimizer(config.optim, m.generator_lr),
             "discriminator": _optimizer(config.optim, m.discriminator_lr)},
        latent_dim=int(m.latent_dim), n_critic=int(m.n_critic), gp_weight=float(m.gp_weight),
        r1_weight=float(m.r1_weight), ema_decay=ema_decay,
        num_classes=int(spec.num_classes) if m.conditional else 0, stylegan=stylegan,
        spectral=m.architecture != "mlp" and m.discriminator_normalization == "spectral",
        n_styles=num_styles(spec.shape[0]) if stylegan else 0, mixing_prob=float(st.style_mixing),
        truncation_samples=int(st.truncation_samples), w_dim=int(st.w_dim),
        mapping_layers=int(st.mapping_layers))


def labels_of(s: Setup, batch: Batch) -> jax.Array | None:
    """The batch's labels for a conditional GAN, None otherwise."""
    if not s.num_classes:
        return None
    require("label" in batch, "model.conditional needs batches with a 'label' entry")
    return batch["label"]


def init(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """Parameters of both networks (and their optimizer states, EMA and spectral vectors)."""
    x = jnp.asarray(example_batch["x"])
    require(tuple(x.shape[1:]) == tuple(s.spec.shape),
            f"batch x has example shape {tuple(x.shape[1:])}, the spec says {tuple(s.spec.shape)}")
    label = labels_of(s, example_batch)
    k_gen, k_disc = jax.random.split(jax.random.fold_in(key, 0))
    z = jnp.zeros((x.shape[0], s.latent_dim), x.dtype)
    g_vars = s.gen.init(k_gen, z) if s.stylegan else s.gen.init(k_gen, z, label)
    d_vars = s.disc.init(k_disc, x, label)
    params = {"generator": g_vars["params"], "discriminator": d_vars["params"]}
    opt_state = {name: s.txs[name].init(params[name]) for name in NETS}
    ema = jax.tree.map(jnp.copy, params) if s.ema_decay > 0 else None
    extra = {"spectral": d_vars["spectral"]} if s.spectral else None
    return TrainState(step=jnp.zeros((), jnp.int32), rng=key, params=params, opt_state=opt_state,
                      ema_params=ema, extra=extra)


def generate(s: Setup, g_params: Any, z: jax.Array, label: jax.Array | None, key: jax.Array | None = None,
             mix: bool = False) -> jax.Array:
    """``G(z)``. StyleGAN: ``key`` draws the noise inputs and, with ``mix``, the style-mixing
    regularisation (Karras et al. 2019, Sec. 3.1): with probability ``style_mixing`` an example takes
    ``w(z)`` before a cutoff drawn uniformly from ``1..L-1`` and ``w(z2)`` after it."""
    if not s.stylegan:
        return s.gen.apply({"params": g_params}, z, label)
    if key is None:
        return s.gen.apply({"params": g_params}, z)
    k_noise, k_mix, k_cut, k_use = jax.random.split(key, 4)
    if not mix or s.mixing_prob == 0.0 or s.n_styles < 2:
        return s.gen.apply({"params": g_params}, z, rngs={"noise": k_noise})
    z_mix = jax.random.normal(k_mix, z.shape, z.dtype)
    cutoff = jax.random.randint(k_cut, (z.shape[0],), 1, s.n_styles)
    cutoff = jnp.where(jax.random.uniform(k_use, (z.shape[0],)) < s.mixing_prob, cutoff, s.n_styles)
    return s.gen.apply({"params": g_params}, z, z_mix, cutoff, rngs={"noise": k_noise})


def critic(s: Setup, d_params: Any, x: jax.Array, label: jax.Array | None, sn: Any = None) -> jax.Array:
    """Discriminator logits ``D(x)`` (with the spectral vectors ``sn`` when spectrally normalised)."""
    variables = {"params": d_params} if sn is None else {"params": d_params, "spectral": sn}
    return s.disc.apply(variables, x, label)


def refresh_spectral(s: Setup, d_params: Any, sn: Any, x: jax.Array, label: jax.Array | None) -> Any:
    """One round of power iterations on every kernel (Miyato et al. 2018, Alg. 1); the vectors do not
    depend on the input, so one example suffices."""
    if sn is None:
        return None
    _, updated = s.disc.apply({"params": d_params, "spectral": sn}, x[:1], None if label is None else label[:1],
                              update_stats=True, mutable=["spectral"])
    return updated["spectral"]


def discriminator_loss(s: Setup, d_params: Any, g_params: Any, real: jax.Array, label: jax.Array | None,
                       key: jax.Array, sn: Any) -> tuple[jax.Array, Metrics]:
    """The loss's ``d_loss`` (Goodfellow et al. 2014, Alg. 1) + ``gp_weight`` x gradient penalty (Gulrajani
    et al. 2017, eq. 3) + ``r1_weight`` x R1 (Mescheder et al. 2018, eq. 9) on fresh latents."""
    k_z, k_gp = jax.random.split(key)
    z = jax.random.normal(k_z, (real.shape[0], s.latent_dim), real.dtype)
    fake = jax.lax.stop_gradient(generate(s, g_params, z, label, jax.random.fold_in(key, 7), mix=True))
    real_logits, fake_logits = critic(s, d_params, real, label, sn), critic(s, d_params, fake, label, sn)
    out = s.loss(real_logits, fake_logits)
    total = out.d_loss
    metrics = {"d_loss": out.d_loss, "d_real": out.d_real, "d_fake": out.d_fake,
               "real_logit": jnp.mean(real_logits), "fake_logit": jnp.mean(fake_logits)}
    if s.gp_weight > 0:
        gp = gradient_penalty(lambda v: critic(s, d_params, v, label, sn), real, fake, k_gp)
        total, metrics["gradient_penalty"] = total + s.gp_weight * gp, gp
    if s.r1_weight > 0:
        r1 = r1_penalty(lambda v: critic(s, d_params, v, label, sn), real)
        total, metrics["r1_penalty"] = total + s.r1_weight * r1, r1
    return total, metrics


def generator_loss(s: Setup, g_params: Any, d_params: Any, batch_size: int, label: jax.Array | None,
                   key: jax.Array, dtype: Any, sn: Any) -> jax.Array:
    """The loss's ``g_loss`` of a fresh generated batch (the labels of the real batch when conditional)."""
    z = jax.random.normal(key, (batch_size, s.latent_dim), dtype)
    fake = generate(s, g_params, z, label, jax.random.fold_in(key, 7), mix=True)
    fake_logits = critic(s, d_params, fake, label, sn)
    return s.loss(jnp.zeros_like(fake_logits), fake_logits).g_loss


def critic_updates(s: Setup, state: TrainState, real: jax.Array, label: jax.Array | None, key: jax.Array
                   ) -> tuple[tuple[Any, Any, Any], Metrics]:
    """``n_critic`` discriminator updates on ``real`` with fresh latents each (``lax.scan``); returns the
    new (params, optimizer state, spectral vectors) and the stacked metrics."""
    g_params = state.params["generator"]
    sn0 = state.extra["spectral"] if s.spectral else None
    loss_grad = jax.grad(functools.partial(discriminator_loss, s), has_aux=True)

    def critic_update(carry: tuple[Any, Any, Any], k: jax.Array) -> tuple[tuple[Any, Any, Any], Metrics]:
        d_params, d_opt, sn = carry
        sn = refresh_spectral(s, d_params, sn, real, label)
        grads, metrics = loss_grad(d_params, g_params, real, label, k, sn)
        updates, d_opt = s.txs["discriminator"].update(grads, d_opt, d_params)
        return (optax.apply_updates(d_params, updates), d_opt, sn), metrics

    return jax.lax.scan(critic_update, (state.params["discriminator"], state.opt_state["discriminator"], sn0),
                        jax.random.split(key, s.n_critic))


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """``n_critic`` discriminator updates, then one generator update (TTUR: each with its own optimizer)."""
    real, label = batch["x"], labels_of(s, batch)
    k_disc, k_gen = jax.random.split(key)
    g_params = state.params["generator"]
    (d_params, d_opt, sn), d_metrics = critic_updates(s, state, real, label, k_disc)
    g_loss, g_grads = jax.value_and_grad(functools.partial(generator_loss, s))(
        g_params, d_params, real.shape[0], label, k_gen, real.dtype, sn)
    g_updates, g_opt = s.txs["generator"].update(g_grads, state.opt_state["generator"], g_params)
    params = {"generator": optax.apply_updates(g_params, g_updates), "discriminator": d_params}
    ema = state.ema_params
    if ema is not None:
        ema = ema_update(ema, params, s.ema_decay)
    metrics = {name: value[-1] for name, value in d_metrics.items()}
    metrics["g_loss"] = g_loss
    new_state = state.replace(step=state.step + 1, params=params, ema_params=ema,
                              opt_state={"generator": g_opt, "discriminator": d_opt},
                              extra={"spectral": sn} if s.spectral else state.extra)
    return new_state, metrics


def evaluate(s: Setup, params: Any, batch: Batch, key: jax.Array) -> Metrics:
    """Both players' objectives on an eval batch (Goodfellow et al. 2014, eq. 1, in the configured loss):
    the discriminator's loss on the real batch against as many generated images (latents and StyleGAN
    noise from ``key``; the real batch's labels when conditional), its real and fake parts, the generator's
    loss on those fakes, and the fraction of real and fake images the discriminator classifies correctly
    (logit > 0 for real). Not defined for a spectrally normalised discriminator, whose power-iteration
    vectors are training state rather than parameters (:func:`make_family` leaves ``evaluate`` unset)."""
    real, label = batch["x"], labels_of(s, batch)
    z = jax.random.normal(key, (real.shape[0], s.latent_dim), real.dtype)
    fake = generate(s, params["generator"], z, label, jax.random.fold_in(key, 7))
    real_logits = critic(s, params["discriminator"], real, label)
    fake_logits = critic(s, params["discriminator"], fake, label)
    out = s.loss(real_logits, fake_logits)
    accuracy = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits <= 0))
    return {"d_loss": out.d_loss, "d_real": out.d_real, "d_fake": out.d_fake, "g_loss": out.g_loss,
            "d_accuracy": accuracy}


def mean_style(s: Setup, g_params: Any) -> jax.Array:
    """``w_avg``: the mean of ``f(z)`` over ``truncation_samples`` latents from a fixed key (Karras et al.
    2019 track it as a running average during training; here it is recomputed from the parameters)."""
    z = jax.random.normal(jax.random.key(0), (s.truncation_samples, s.latent_dim))
    mapping = MappingNetwork(s.w_dim, s.mapping_layers)
    return jnp.mean(mapping.apply({"params": g_params["mapping"]}, z), axis=0)


def draw(s: Setup, g_params: Any, key: jax.Array, num: int, label: jax.Array | None, psi: jax.Array | None
         ) -> jax.Array:
    """``num`` generated samples from latents drawn with ``key`` (StyleGAN: truncated by ``psi`` if given)."""
    z = jax.random.normal(key, (num, s.latent_dim))
    if not s.stylegan:
        return generate(s, g_params, z, label)
    w_avg = None if psi is None else mean_style(s, g_params)
    x = s.gen.apply({"params": g_params}, z, psi=1.0 if psi is None else psi, w_avg=w_avg,
                    rngs={"noise": jax.random.fold_in(key, 1)})
    return jnp.clip(x, -1.0, 1.0)  # the synthesis output is linear (no tanh), clipped to the data range


def sample_labels(s: Setup, key: jax.Array, num: int, label: int | jax.Array | None) -> jax.Array | None:
    """Labels ``[num]`` of a conditional draw (``label``: an int, an array ``[num]``, or None: uniform)."""
    if not s.num_classes:
        require(label is None, "this GAN is unconditional; sample without label")
        return None
    if label is None:
        return jax.random.randint(key, (num,), 0, s.num_classes)
    labels = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (num,)) if jnp.ndim(label) == 0 \
        else jnp.asarray(label, jnp.int32)
    require(labels.shape == (num,), f"label must be an int or an array [{num}], got shape {tuple(labels.shape)}")
    require(bool(jnp.all((labels >= 0) & (labels < s.num_classes))),
            f"labels must lie in [0, {s.num_classes}); got values outside")
    return labels


def sample(s: Setup, draw_jit: Any, params: Any, key: jax.Array, num: int, label: int | jax.Array | None = None,
           truncation: float | None = None) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` samples ``G(z)``, ``z ~ N(0, I)`` from ``key``; ``label`` (int or ``[num]``, random when
    None) for conditional models. StyleGAN: noise inputs drawn from ``key``, outputs clipped to
    [-1, 1]; ``truncation`` psi (Karras et al. 2019) pulls every ``w`` towards the mean style. One
    network evaluation: ``info["nfe"] == 1``. ``draw_jit``: :func:`draw` bound to ``s`` and compiled."""
    require(int(num) >= 1, f"num must be >= 1, got {num}")
    k_z, k_label = jax.random.split(key)
    info: dict[str, Any] = {"nfe": 1}
    labels = sample_labels(s, k_label, num, label)
    if labels is not None:
        info["label"] = labels
    psi = None
    if truncation is not None:
        require(s.stylegan, "truncation applies to architecture 'stylegan' only")
        require(0.0 <= float(truncation) <= 1.0, f"truncation psi must be in [0, 1], got {truncation}")
        psi, info["truncation"] = jnp.asarray(float(truncation), jnp.float32), float(truncation)
    return draw_jit(params["generator"], k_z, int(num), labels, psi), info


def sample_options(s: Setup) -> tuple[Option, ...]:
    """The exact sampling options: ``label < num_classes`` for a conditional GAN, ``truncation`` for StyleGAN."""
    if s.num_classes:
        return (LABEL.narrowed(high=s.num_classes - 1),)
    return (TRUNCATION,) if s.stylegan else ()


def make_family(config: Any, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()) -> Family:
    """Build the GAN family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``: the
    module's pure functions bound to one :class:`Setup`.

    Each step: for ``n_critic`` iterations the discriminator minimises :func:`discriminator_loss`; then the
    generator minimises :func:`generator_loss`. Conditional models give the generated batch the labels of
    the real batch. ``model.task`` other than 'generate' ('pix2pix', 'cyclegan', 'srgan') builds the
    image-to-image family of :mod:`gm_jax.gan.image_to_image` instead (``inputs.eval_batches`` gives its
    default source images); the unconditional and class-conditional GANs do not use ``inputs``.
    """
    if config.model.get("task", "generate") != "generate":  # Pix2Pix, CycleGAN, SRGAN
        return image_to_image.make_family(config, spec, inputs)
    s = build_setup(config, spec)
    draw_jit = jax.jit(functools.partial(draw, s), static_argnums=2)
    return Family(name="gan", init=functools.partial(init, s), train_step=functools.partial(train_step, s),
                  sample=functools.partial(sample, s, draw_jit), sample_options=sample_options(s),
                  evaluate=None if s.spectral else functools.partial(evaluate, s),
                  conditioning=("label",) if s.num_classes else ())
