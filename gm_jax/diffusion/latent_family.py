"""Text-to-image latent diffusion (Rombach et al. 2022): the diffusion family's processes, objectives and
samplers run on the latents of a frozen KL autoencoder, the denoiser attending to a text encoder's token
features through cross-attention, with classifier-free guidance learned by caption dropout.

The recipe (Rombach et al. 2022, Sec. 3 and 4.3.2):

- first stage (``model.first_stage``: the work directory of a ``kl_autoencoder`` run, frozen): an image x in
  [−1, 1] is encoded to z = μ(x) + σ(x) ⊙ ε ~ q(z | x) and rescaled to ``latent_scale · z``, where
  ``latent_scale`` = 1 / std of the latents of the first training batch, fixed at init (their appendix);
  samples are decoded by the frozen decoder at ``z / latent_scale``.
- text encoder τ(y): a pre-LN :class:`~gm_jax.nn.transformer.TextTransformer` trained jointly with the
  U-Net (``model.text_encoder = 'joint'``), or the frozen text tower of a ``clip`` run (``'clip'``,
  ``model.text_encoder_of``); its per-token features [B, L, D] with the padding mask are the context of
  every SpatialTransformer of the U-Net (ε_θ(z_t, t, τ(y)), their eq. 3).
- classifier-free guidance (Ho & Salimans 2022): in training each caption is replaced by the empty prompt
  with probability ``model.caption_dropout``; sampling uses x̂_0 = x̂_0(z | n) + w (x̂_0(z | c) − x̂_0(z | n))
  with n the empty prompt, or a negative prompt when one is given (as in Stable Diffusion's pipelines).

``sample(params, key, num, prompt=..., negative_prompt=..., **options)`` draws ``num`` images per prompt with
any registered sampler (the denoiser interface is unchanged: latents are just another array).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gm_jax.core import Batch, DataSpec, Family, FamilyInputs, Metrics, PyTree, TrainState, apply_gradients
from gm_jax.core.errors import CheckpointError, check_choice, require
from gm_jax.core.family import TextSpec, from_symmetric, to_symmetric
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import check_options
from gm_jax.diffusion import family as pixel
from gm_jax.diffusion.parametrization import network_x0
from gm_jax.diffusion.samplers import SamplerSpec, all_sampler_options, prior_sample
from gm_jax.diffusion.schedules import make_grid
from gm_jax.nn.clip import MiniCLIP
from gm_jax.nn.kl_autoencoder import KLAutoencoder, latent_scale_factor, reparameterize
from gm_jax.nn.precision import compute_dtype
from gm_jax.nn.transformer import TextTransformer
from gm_jax.nn.unet import UNet, unet_config

FIRST_STAGE_FIELD = "model.first_stage"
CLIP_FIELD = "model.text_encoder_of"
TEXT_ENCODERS = ("joint", "clip")
SAMPLE_OPTIONS = (pixel.SAMPLER, pixel.STEPS, pixel.GUIDANCE) + all_sampler_options()  # prompts are not options
# the diffusion fields the latent process reads (the rest of a pixel model's config does not apply)
PROCESS_FIELDS = ("process", "beta_schedule", "num_timesteps", "parametrization", "unet", "dropout", "sigma_data",
                  "ve_sigma_min", "ve_sigma_max", "t_min", "sampler", "grid", "sample_steps", "max_sample_steps",
                  "eta", "guidance", "pc_snr", "pc_corrector_steps", "langevin_step_lr", "langevin_steps", "dtype")


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model``: the diffusion process and sampler fields of the pixel family
    (:func:`gm_jax.diffusion.family.model_defaults`) and the latent/text ones below."""
    d = pixel.model_defaults()
    c = ml_collections.ConfigDict({k: d[k] for k in PROCESS_FIELDS})
    c.family = "latent_diffusion"
    c.first_stage = ""                  # work directory of a trained kl_autoencoder run (required)
    c.text_encoder = "joint"            # 'joint': a TextTransformer trained with the U-Net | 'clip': frozen
    c.text_encoder_of = ""              # clip: work directory of a trained clip run
    c.text_width = 64                   # joint text encoder: width, depth, heads
    c.text_depth = 2
    c.text_heads = 4
    c.caption_dropout = 0.1             # P(caption → empty prompt) in training (classifier-free guidance)
    c.attn_resolutions = (7, 4)         # latent feature-map sides with a SpatialTransformer (plus the middle)
    c.num_heads = 4                     # heads of the U-Net's self- and cross-attention
    c.transformer_depth = 1
    c.unet = "small"
    c.guidance = 3.0
    return c


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces: ``latent`` the diffusion family's setup on the latent space (no data scaling, no
    clipping), the frozen first stage and (``clip``) text tower, the trainable U-Net and joint text encoder,
    the optimizer with a zero update for the frozen parameters, the pixel data's spec and its captions."""

    latent: pixel.Setup
    spec: DataSpec
    text: TextSpec
    autoencoder: KLAutoencoder
    unet: UNet
    text_encoder: Any
    use_clip: bool
    frozen: Mapping[str, Any]
    tx: Any
    ema_decay: float
    caption_dropout: float
    empty: tuple[np.ndarray, np.ndarray]


def _upstream(inputs: FamilyInputs, field: str, workdir: str, family: str, train_hint: str) -> Any:
    """The loaded run ``inputs.upstream[field]``, checked to be a ``family`` run."""
    up = inputs.upstream.get(field)
    require(bool(workdir), f"{field} is empty; set it to the work directory of a trained {family} run "
            f"({train_hint})")
    require(up is not None, f"{field}={workdir!r} was not loaded; train the {family} run there first "
            f"({train_hint})", CheckpointError)
    got = dict(up.config).get("model", {}).get("family")
    require(got == family, f"{field}={workdir!r} is a {got!r} run, not a {family!r} run; point it at one")
    return up


def _same_data(config: Any, up: Any, field: str) -> None:
    """The upstream run was trained on the same dataset (and, for captions, the same vocabulary)."""
    mine, theirs = config.get("data", {}), dict(up.config).get("data", {})
    for key in ("name", "scale"):
        require(theirs.get(key) == mine.get(key), f"data.{key}={mine.get(key)!r} differs from {field}'s "
                f"{theirs.get(key)!r}; train both on the same data")


def first_stage(config: Any, spec: DataSpec, inputs: FamilyInputs) -> tuple[KLAutoencoder, Any]:
    """The frozen KL autoencoder of ``model.first_stage`` and its parameters ``{"autoencoder": ...}``."""
    up = _upstream(inputs, FIRST_STAGE_FIELD, str(config.model.first_stage), "kl_autoencoder",
                   "`gm-jax train experiments/configs/kl_autoencoder_fashion_mnist.py --workdir DIR`")
    _same_data(config, up, FIRST_STAGE_FIELD)
    m1 = dict(up.config)["model"]
    net = KLAutoencoder(image_channels=int(spec.shape[-1]), latent_channels=int(m1["latent_channels"]),
                        channels=tuple(m1["channels"]))
    require(isinstance(up.params, Mapping) and "autoencoder" in up.params,
            f"{FIRST_STAGE_FIELD}={up.workdir!r} holds no autoencoder parameters; retrain it", CheckpointError)
    return net, jax.tree.map(np.asarray, up.params["autoencoder"])


def clip_tower(config: Any, text: TextSpec, inputs: FamilyInputs) -> tuple[MiniCLIP, Any]:
    """The frozen MiniCLIP of ``model.text_encoder_of`` (its text tower gives the context) and its params."""
    up = _upstream(inputs, CLIP_FIELD, str(config.model.text_encoder_of), "clip",
                   "`gm-jax train experiments/configs/clip_fashion_mnist.py --workdir DIR`")
    _same_data(config, up, CLIP_FIELD)
    m = dict(up.config)["model"]
    net = MiniCLIP(vocab_size=len(text.vocabulary), max_len=text.max_length, embed_dim=int(m["embed_dim"]),
                   width=int(m["width"]), depth=int(m["depth"]), num_heads=int(m["num_heads"]),
                   image_channels=tuple(m["image_channels"]))
    params = up.params.get("clip") if isinstance(up.params, Mapping) else None
    require(params is not None, f"{CLIP_FIELD}={up.workdir!r} holds no clip parameters; retrain it",
            CheckpointError)
    rows = np.shape(params["text_encoder"]["token_embed"]["embedding"])[0]
    require(rows == len(text.vocabulary), f"{CLIP_FIELD}={up.workdir!r} has a {rows}-word vocabulary, the "
            f"captions here {len(text.vocabulary)}; train the CLIP on the same captions")
    return net, jax.tree.map(np.asarray, params)


def _param_labels(params: Mapping[str, Any]) -> dict[str, Any]:
    """'frozen' for the first stage, the CLIP tower and the latent scale; 'train' for the rest."""
    return {name: jax.tree.map(lambda _, n=name: "frozen" if n in ("autoencoder", "clip", "latent_scale")
                               else "train", sub) for name, sub in params.items()}


def _latent_setup(config: Any, latent_shape: tuple[int, ...]) -> pixel.Setup:
    """The pixel family's setup for the process on latents of ``latent_shape``: no class labels, no [−1, 1]
    mapping of the data and no clipping of x̂_0 (latents are unbounded)."""
    m = ml_collections.ConfigDict({**pixel.model_defaults().to_dict(),
                                   **{k: config.model[k] for k in PROCESS_FIELDS}})
    m.class_conditional, m.network, m.condition = False, "unet", ""
    cfg = ml_collections.ConfigDict({"model": m, "optim": config.optim})
    s = pixel.build_setup(cfg, DataSpec(shape=latent_shape, value_range=(-1.0, 1.0), name="latents"))
    return dataclasses.replace(s, scale_data=False, clip_denoised=False)


def build_setup(config: Any, spec: DataSpec, inputs: FamilyInputs) -> Setup:
    """Validate ``config.model`` against the captioned image data ``spec`` and fix every static piece."""
    m = config.model
    require(spec.is_image, f"latent diffusion needs images [H, W, C], got shape {spec.shape}")
    require(spec.text is not None, "latent diffusion is text-conditioned and these data have no captions; set "
            "data.captions=True (fashion_mnist, fashion_mnist_small or mnist)")
    check_choice("model.text_encoder", m.text_encoder, TEXT_ENCODERS)
    require(isinstance(m.attn_resolutions, (tuple, list)),
            f"model.attn_resolutions must be a tuple of latent sides, e.g. (7, 4), got {m.attn_resolutions!r}")
    require(0.0 <= float(m.caption_dropout) < 1.0, f"model.caption_dropout must be in [0, 1), got {m.caption_dropout}")
    autoencoder, frozen_ae = first_stage(config, spec, inputs)
    frozen = {"autoencoder": frozen_ae}
    factor = 2 ** len(autoencoder.channels)
    latent_shape = (-(-spec.shape[0] // factor), -(-spec.shape[1] // factor), autoencoder.latent_channels)
    if m.text_encoder == "clip":
        text_encoder, frozen["clip"] = clip_tower(config, spec.text, inputs)
        width = text_encoder.width
    else:
        text_encoder = TextTransformer(len(spec.text.vocabulary), spec.text.max_length, int(m.text_width),
                                       int(m.text_depth), int(m.text_heads))
        width = int(m.text_width)
    kwargs = unet_config(m.unet, attn_resolutions=tuple(m.attn_resolutions), context_dim=width,
                         num_heads=int(m.num_heads), transformer_depth=int(m.transformer_depth),
                         dtype=compute_dtype(m))
    if float(m.dropout) >= 0:
        kwargs["dropout"] = float(m.dropout)
    tx = optax.multi_transform({"train": make_optimizer(config.optim), "frozen": optax.set_to_zero()},
                               _param_labels)
    return Setup(latent=_latent_setup(config, latent_shape), spec=spec, text=spec.text, autoencoder=autoencoder,
                 unet=UNet(**kwargs), text_encoder=text_encoder, use_clip=m.text_encoder == "clip",
                 frozen=frozen, tx=tx, ema_decay=float(config.optim.get("ema_decay", 0.0)),
                 caption_dropout=float(m.caption_dropout), empty=spec.text.encode([""]))


# ----------------------------------------------------------------------------------------------------------
# The pieces: first stage, text context, network
# ----------------------------------------------------------------------------------------------------------


def encode_latents(s: Setup, params: PyTree, x: jax.Array, key: jax.Array | None) -> jax.Array:
    """``latent_scale · z`` with z = μ(x) + σ(x) ⊙ ε ~ q(z | x) of the frozen encoder (z = μ without a key)."""
    frozen = {"params": jax.lax.stop_gradient(params["autoencoder"])}
    mean, logvar = s.autoencoder.apply(frozen, to_symmetric(x, s.spec.value_range), method=KLAutoencoder.encode)
    z = mean if key is None else reparameterize(mean, logvar, key)
    return jax.lax.stop_gradient(params["latent_scale"]) * z


def decode_latents(s: Setup, params: PyTree, z: jax.Array) -> jax.Array:
    """Images in ``spec.value_range`` (clipped) of scaled latents: the frozen decoder at ``z / latent_scale``."""
    x = s.autoencoder.apply({"params": params["autoencoder"]}, z / params["latent_scale"], method=KLAutoencoder.decode)
    lo, hi = s.spec.value_range
    return jnp.clip(from_symmetric(x[:, :s.spec.shape[0], :s.spec.shape[1]], s.spec.value_range), lo, hi)


def text_context(s: Setup, params: PyTree, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """τ(y): the text encoder's per-token features [B, L, D] (the frozen CLIP text tower or the joint one)."""
    if s.use_clip:
        features, _ = s.text_encoder.apply({"params": jax.lax.stop_gradient(params["clip"])}, tokens, mask,
                                           method=lambda module, t, k: module.text_encoder(t, k))
        return features
    features, _ = s.text_encoder.apply({"params": params["text"]}, tokens, mask)
    return features


def network_fn(s: Setup, params: PyTree, context: jax.Array, mask: jax.Array, train: bool = False,
               key: jax.Array | None = None) -> Callable:
    """``(z, t, label) -> output`` of the U-Net attending to ``context`` [B, L, D] / ``mask`` [B, L] (the label is
    unused); a batch that stacks k copies of the rows (guidance) gets the context repeated k times."""
    rngs = {"dropout": key} if key is not None else {}

    def net(z, t, label):
        del label
        k = z.shape[0] // context.shape[0]
        ctx, msk = jnp.concatenate([context] * k, 0), jnp.concatenate([mask] * k, 0)
        return s.unet.apply({"params": params["unet"]}, z, t, None, train, context=ctx, context_mask=msk, rngs=rngs)

    return net


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------


def init(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    """U-Net and joint text encoder initialized; the frozen stages copied in; ``latent_scale`` = 1 / std of
    the latents z ~ q(z | x) of ``example_batch`` (the first training batch; Rombach et al. 2022, App.)."""
    k_unet, k_text, k_z = jax.random.split(key, 3)
    params: dict[str, Any] = {name: jax.tree.map(jnp.asarray, p) for name, p in s.frozen.items()}
    params["latent_scale"] = jnp.ones((), jnp.float32)
    z = encode_latents(s, params, example_batch["x"], k_z)
    params["latent_scale"] = latent_scale_factor(z)
    tokens, mask = jnp.asarray(example_batch["tokens"]), jnp.asarray(example_batch["token_mask"])
    if not s.use_clip:
        params["text"] = s.text_encoder.init(k_text, tokens, mask)["params"]
    context = text_context(s, params, tokens, mask)
    params["unet"] = s.unet.init(k_unet, z, jnp.zeros((z.shape[0],)), None, False, context=context,
                                 context_mask=mask)["params"]
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def drop_captions(s: Setup, key: jax.Array, tokens: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each row replaced by the empty prompt with probability ``model.caption_dropout`` (Ho & Salimans 2022)."""
    drop = jax.random.bernoulli(key, s.caption_dropout, (tokens.shape[0], 1))
    empty_tokens, empty_mask = (jnp.asarray(a) for a in s.empty)
    return jnp.where(drop, empty_tokens, tokens), jnp.where(drop, empty_mask, mask)


def latent_loss(s: Setup, params: PyTree, batch: Batch, key: jax.Array, train: bool) -> jax.Array:
    """Per-example objective of the pixel family (:func:`gm_jax.diffusion.family.objective`) on the latents
    of ``batch["x"]``, conditioned on the (dropped-out in training) captions: Rombach et al. 2022, eq. 3."""
    k_z, k_drop, k_t, k_n, k_d = jax.random.split(key, 5)
    z = encode_latents(s, params, batch["x"], k_z)
    tokens, mask = jnp.asarray(batch["tokens"]), jnp.asarray(batch["token_mask"])
    if train:
        tokens, mask = drop_captions(s, k_drop, tokens, mask)
    net = network_fn(s, params, text_context(s, params, tokens, mask), mask, train, k_d if train else None)
    return pixel.objective(s.latent, net, z, None, k_t, k_n)


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One optimizer step on the mean latent loss (the frozen stages get a zero update)."""
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(latent_loss(s, p, batch, key, True)))(state.params)
    return apply_gradients(state, s.tx, grads, s.ema_decay), {"loss": loss}


def evaluate(s: Setup, params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
    """``loss``: the training objective on the batch's own captions (no dropout)."""
    return {"loss": jnp.mean(latent_loss(s, params, batch, key, False))}


# ----------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------


def guided_denoiser(s: Setup, params: PyTree, cond: tuple[jax.Array, jax.Array], null: tuple[jax.Array, jax.Array],
                    guidance: jax.Array) -> Callable:
    """x̂_0(z) = x̂_0(z | n) + w (x̂_0(z | c) − x̂_0(z | n)) (Ho & Salimans 2022, eq. 6) in one batched pass over
    [c; n], c the prompts' (tokens, mask) and n the empty or negative prompt's; ``w`` a runtime array."""
    tokens = jnp.concatenate([cond[0], null[0]], 0)
    mask = jnp.concatenate([cond[1], null[1]], 0)
    net = network_fn(s, params, text_context(s, params, tokens, mask), mask)
    lat = s.latent

    def denoiser(x, t, alpha, sigma):
        b = x.shape[0]
        x0 = network_x0(lat.kind, net, jnp.concatenate([x, x], 0), t, alpha, sigma, None, lat.time_scale,
                        lat.sigma_data)
        return x0[b:] + jnp.asarray(guidance, x.dtype) * (x0[:b] - x0[b:])

    return denoiser


def sample_chain(s: Setup, sampler: SamplerSpec, total: int, static: Mapping[str, Any]) -> Callable:
    """``run(params, key, steps, guidance, cond, null, first_index, arrays) -> (x, info)``: latents drawn from
    the prior of the grid, the sampler's chain with the guided denoiser, then the frozen decoder."""
    lat = s.latent

    def run(params, key, steps, guidance, cond, null, first_index, arrays):
        grid = make_grid(lat.grid_name, lat.process, steps, lat.max_steps)
        k_prior, k_chain = jax.random.split(key)
        z_T = prior_sample(k_prior, grid, (total,) + tuple(lat.spec.shape), first_index)
        z, info = sampler(guided_denoiser(s, params, cond, null, guidance), k_chain, z_T, grid, first_index,
                          **static, **arrays)
        return decode_latents(s, params, z), info

    return run


def prompt_list(prompt: str | Sequence[str] | None) -> list[str]:
    """One prompt or several as a list (``None``: no prompt)."""
    if prompt is None:
        return []
    return [prompt] if isinstance(prompt, str) else list(prompt)


def check_prompts(s: Setup, prompts: list[str], negative: str | None, guidance: float) -> None:
    """Refusals before any work: a model without an unconditional branch (``caption_dropout`` 0) cannot take
    an empty prompt, a guidance other than 1 or a negative prompt."""
    if s.caption_dropout > 0:
        return
    require(all(p.strip() for p in prompts), "an empty prompt needs an unconditional branch, and this model was "
            "trained with model.caption_dropout=0; give a non-empty prompt")
    require(guidance == 1.0 and negative is None, "guidance and negative prompts need an unconditional branch, "
            "and this model was trained with model.caption_dropout=0; use --guidance 1 and no --negative_prompt")


def sample(s: Setup, compiled: dict, params: PyTree, key: jax.Array, num: int, first_index: int = 0,
           prompt: str | Sequence[str] | None = None, negative_prompt: str | None = None,
           **options: Any) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` images per prompt (prompt p's sample j is row ``p · num + j``, keyed by index ``first_index``
    plus that row, so rows do not depend on how many are drawn together) and ``{"nfe": ...}``. The empty
    prompt "" is an unconditional draw; without any prompt the ``num`` rows cycle through the data's class
    prompts ("a photo of a t-shirt", ...). Unknown words, too long prompts and options the model does not
    take are one-line errors before any work."""
    require(int(num) >= 1, f"num must be >= 1, got {num}")
    prompts = prompt_list(prompt)
    if prompts:
        rows = [p for p in prompts for _ in range(int(num))]
    else:
        classes = list(s.text.class_prompts) or [""]
        rows = [classes[i % len(classes)] for i in range(int(num))]
    given = {k: v for k, v in options.items() if v is not None}
    sampler = pixel.configured_sampler(s.latent.m, str(given.pop("sampler", s.latent.m.sampler)))
    declared = pixel.sample_options(s.latent)
    own = {o.name: o for o in declared}
    pixel.check_steps_bound(s.latent, given)
    given = check_options(given, declared, "family 'latent_diffusion'")
    steps = own["steps"].check(given.pop("steps", own["steps"].default))
    guidance = own["guidance"].check(given.pop("guidance", own["guidance"].default))
    check_prompts(s, rows, negative_prompt, float(guidance))
    cond = s.text.encode(rows)
    null = s.text.encode([negative_prompt or ""] * len(cond[0]))
    opts = sampler.check(given)
    kinds = {o.name: o.kind for o in sampler.options}
    static = {k: v for k, v in opts.items() if kinds[k] == "str"}
    arrays = {k: (np.float32(v) if kinds[k] == "float" else np.int32(v)) for k, v in opts.items() if k not in static}
    total = len(cond[0])
    cache_key = (sampler.name, total, tuple(sorted(static.items())))
    if cache_key not in compiled:
        compiled[cache_key] = jax.jit(sample_chain(s, sampler, total, static))
    x, info = compiled[cache_key](params, key, np.int32(steps), np.float32(guidance), cond, null,
                                  np.int32(first_index), arrays)
    return x, {"nfe": int(info["nfe"])}


def make_family(config: ml_collections.ConfigDict, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()
                ) -> Family:
    """The latent diffusion family of ``config.model`` (:func:`model_defaults`) on captioned images ``spec``,
    its first stage (and CLIP) loaded by the train layer into ``inputs.upstream``."""
    s = build_setup(config, spec, inputs)
    return Family(name="latent_diffusion", init=functools.partial(init, s),
                  train_step=functools.partial(train_step, s), sample=functools.partial(sample, s, {}),
                  evaluate=jax.jit(functools.partial(evaluate, s)), sample_options=pixel.sample_options(s.latent),
                  conditioning=("text",))
