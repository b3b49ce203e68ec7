"""The diffusion family behind the common step protocol (gm_jax.core.family).

``config.model`` fields are listed in :func:`model_defaults`; ``config.optim`` goes to
``gm_jax.core.make_optimizer`` (EMA of the parameters when ``config.optim.ema_decay > 0``).

Images are mapped from ``spec.value_range`` to [−1, 1] for the model and back (clipped) for samples;
vectors (toy data) are used as they are. With labelled data and ``model.class_conditional`` the network
gets the label, replaced by the null label with probability ``model.label_dropout`` during training, so
that sampling can use classifier-free guidance (Ho & Salimans 2022).

Sampling options are data: :data:`SAMPLE_OPTIONS` (the sampler, chosen from the registry of
:mod:`gm_jax.diffusion.samplers`, steps, guidance, label and every registered sampler's own options); a built
family declares the exact set of its config (steps <= the grid length, label only when class-conditional,
defaults from ``config.model``, e.g. ``model.pc_snr`` for ``snr``). The factory :func:`make_family` only binds
the module's pure functions (loss, train step, sample chain, evaluation) to one :class:`Setup`.

Image models also restore and edit (:data:`RESTORE_OPTIONS`, :data:`EDIT_OPTIONS`): :func:`restore` draws
posterior samples of a linear inverse problem y = A x + σ_y ε with a sampler of
:mod:`gm_jax.diffusion.inverse` (RePaint, DDNM, DPS, DDRM, ΠGDM), :func:`edit` runs SDEdit or DDIM
inversion and regeneration (:mod:`gm_jax.diffusion.editing`). Both take images and measurements in the
data's value range and units and map them to the model's [−1, 1] (a linear A commutes with the affine map
up to the constant b A 1, :func:`measurement_to_model`).

SR3 (Saharia et al. 2022), ``model.condition = 'superres'``: the network sees concat([x_t, A⁺y]) with A the
average pooling ×``model.sr_scale`` and A⁺ its nearest-neighbour upsampling, trained with the usual loss on
(x, A x + σ_y ε) formed from each batch; it restores with method ``sr3`` (the sampler ``model.sampler`` with
the condition fixed through the chain), and its ``sample`` super-resolves the measurements of eval images.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gm_jax.core import Batch, DataSpec, Family, FamilyInputs, Metrics, PyTree, TrainState, apply_gradients
from gm_jax.core.errors import ConfigError, check_choice, require
from gm_jax.core.optim import make_optimizer
from gm_jax.core.options import Option, check_options
from gm_jax.diffusion import losses
from gm_jax.diffusion.editing import STRENGTH, invert_and_regenerate, sdedit
from gm_jax.diffusion.inverse import CONDITIONED_METHODS, INVERSE_SAMPLERS
from gm_jax.diffusion.inverse import restore as inverse_restore
from gm_jax.diffusion.networks import TimeConditionedMLP
from gm_jax.diffusion.operators import LinearOperator, downsample
from gm_jax.diffusion.parametrization import PARAMETRIZATIONS, from_x0, make_denoiser, network_x0
from gm_jax.diffusion.samplers import SamplerSpec, all_sampler_options, get_sampler, prior_sample, sampler_names
from gm_jax.diffusion.schedules import DiscreteSchedule, discrete_schedule, make_grid, make_sde
from gm_jax.nn.precision import compute_dtype
from gm_jax.nn.unet import UNet, unet_config

PROCESSES = ("discrete", "vp", "subvp", "ve", "edm")
CONDITIONS = ("", "superres")  # model.condition: unconditional, or SR3 on the upsampled low-res image

# Sampling options: the family's own, then every registered sampler's (the CLI builds its flags from these).
SAMPLER = Option("sampler", "str", "diffusion sampler", "ddim", choices=sampler_names())
STEPS = Option("steps", "int", "sampler grid steps (<= the schedule's length)", 50, low=1)
GUIDANCE = Option("guidance", "float", "classifier-free guidance scale w (1: conditional only)", 1.0, low=0.0)
LABEL = Option("label", "int", "class of every sample (class-conditional models; none: unconditional)", low=0)
SAMPLE_OPTIONS: tuple[Option, ...] = (SAMPLER, STEPS, GUIDANCE, LABEL) + all_sampler_options()
# Sampler options whose default is a field of config.model.
SAMPLER_DEFAULT_FIELDS = {"eta": "eta", "snr": "pc_snr", "n_corrector": "pc_corrector_steps",
                          "step_lr": "langevin_step_lr", "n_inner": "langevin_steps"}


def model_defaults() -> ml_collections.ConfigDict:
    """Fields of ``config.model`` for this family, with their defaults."""
    c = ml_collections.ConfigDict()
    c.family = "diffusion"
    c.process = "discrete"          # 'discrete' (DDPM β-schedule) | 'vp' | 'subvp' | 've' | 'edm'
    c.beta_schedule = "linear"      # discrete: 'linear' | 'cosine'
    c.num_timesteps = 1000          # discrete: T
    c.parametrization = "eps"       # 'eps' | 'x0' | 'v' | 'score' | 'edm' (continuous processes only)
    c.network = "unet"              # 'unet' (images) | 'mlp' (vectors)
    c.unet = "small"                # gm_jax.nn.unet.UNET_CONFIGS name: 'tiny' | 'small' | 'ddpm_cifar10'
    c.dropout = -1.0                # U-Net dropout; < 0 keeps the named config's value
    c.mlp_hidden = (128, 128, 128)
    c.mlp_emb_dim = 64
    c.class_conditional = True      # use labels when the data has classes
    c.label_dropout = 0.1           # P(label → null label) in training (classifier-free guidance)
    c.sigma_data = 0.5              # EDM σ_data
    c.ve_sigma_min = 0.01           # VE SDE σ_min, σ_max (Song et al. 2021, eq. 9); σ_max ≈ the largest
    c.ve_sigma_max = 50.0           #   distance between training points (Song & Ermon 2020, technique 1)
    c.t_min = 1e-3                  # continuous processes: training times t ~ U(t_min, T)
    c.sampler = "ddim"              # a name of gm_jax.diffusion.samplers.sampler_names()
    c.grid = ""                     # 'discrete' | 'uniform' | 'edm'; '' picks by process
    c.sample_steps = 50
    c.max_sample_steps = 1000       # static grid length: steps up to this never recompile
    c.eta = 0.0                     # DDIM η
    c.guidance = 1.0                # classifier-free guidance scale w (1: conditional only)
    c.pc_snr = 0.16                 # PC Langevin corrector target SNR
    c.pc_corrector_steps = 1
    c.langevin_step_lr = 0.0        # annealed Langevin ε; 0: 0.2 σ_L² of the grid in use (Song & Ermon 2020)
    c.langevin_steps = 5            # annealed Langevin steps per level
    c.eval_num_t = 0                # VLB: 0 = all T terms, else L_0 + L_T exact and this many stratified KL terms
    c.clip_denoised = True          # images: clip x̂₀ to [−1, 1] while sampling (Ho et al. 2020's sampler)
    c.dtype = "float32"             # U-Net computation dtype: 'float32' | 'bfloat16' (parameters stay float32)
    c.condition = ""                # '' | 'superres': SR3, the network also sees A⁺ A x (Saharia et al. 2022)
    c.sr_scale = 4                  # superres: the average-pooling factor of A (divides H and W)
    c.sr_sigma_y = 0.0              # superres: training measurement noise std of y = A x + σ_y ε (data units)
    return c


def _validate(m: Any, spec: DataSpec) -> None:
    check_choice("model.process", m.process, PROCESSES)
    check_choice("model.parametrization", m.parametrization, PARAMETRIZATIONS)
    check_choice("model.network", m.network, ("unet", "mlp"))
    check_choice("model.beta_schedule", m.beta_schedule, ("linear", "cosine"))
    require(m.parametrization != "edm" or m.process != "discrete",
            "model.parametrization 'edm' needs a continuous process; set model.process to 'edm', 'vp' or 've'")
    require(m.network != "unet" or spec.is_image,
            f"model.network 'unet' needs image data [H, W, C], got shape {spec.shape}; use 'mlp'")
    require(0.0 <= m.label_dropout < 1.0, f"model.label_dropout must be in [0, 1), got {m.label_dropout}")
    require(int(m.num_timesteps) >= 1, f"model.num_timesteps must be >= 1, got {m.num_timesteps}")
    lo, hi = float(m.get("ve_sigma_min", 0.01)), float(m.get("ve_sigma_max", 50.0))  # runs saved before these
    require(0 < lo < hi, f"model.ve_sigma_min must be in (0, ve_sigma_max), got {lo} and {hi}")
    require(0 <= int(m.eval_num_t) <= max(int(m.num_timesteps) - 1, 0),
            f"model.eval_num_t must be 0 (all terms) or in [1, num_timesteps - 1], got {m.eval_num_t}")
    _validate_condition(m, spec)


def _validate_condition(m: Any, spec: DataSpec) -> None:
    """``model.condition`` and, for SR3, ``model.sr_scale`` / ``model.sr_sigma_y`` (runs saved before them:
    unconditional)."""
    condition = str(m.get("condition", ""))
    check_choice("model.condition", condition, CONDITIONS)
    if not condition:
        return
    require(spec.is_image, f"model.condition 'superres' needs image data [H, W, C], got shape {spec.shape}; "
            "set model.condition to ''")
    scale, (h, w) = int(m.get("sr_scale", 4)), spec.shape[:2]
    require(scale >= 2 and h % scale == 0 and w % scale == 0,
            f"model.sr_scale must be >= 2 and divide the image size {h}x{w}, got {scale}; choose a divisor of both")
    require(float(m.get("sr_sigma_y", 0.0)) >= 0.0, f"model.sr_sigma_y must be >= 0, got {m.sr_sigma_y}")


def build_network(m: Any, spec: DataSpec, num_classes: int) -> Any:
    """The U-Net or the time-conditioned MLP named by ``model.network``."""
    if m.network == "mlp":
        return TimeConditionedMLP(tuple(m.mlp_hidden), int(m.mlp_emb_dim), num_classes)
    kwargs = unet_config(m.unet, num_classes=num_classes, dtype=compute_dtype(m))
    if m.dropout >= 0:
        kwargs["dropout"] = float(m.dropout)
    if m.get("condition", ""):  # SR3: input [x_t, A⁺y] has 2C channels, the output C
        kwargs["out_channels"] = int(spec.shape[-1])
    return UNet(**kwargs)


@dataclasses.dataclass(frozen=True)
class Setup:
    """The static configuration every function of the family closes over (built once by :func:`build_setup`).

    kind: the parametrization; process: the discrete schedule or the SDE; time_scale: network time per unit
    of process time; (lo, hi): the data's value range; scale_data: images are mapped to [−1, 1];
    max_steps: the static grid length of sampling; grid_name: the sampling grid; cond_op: SR3's average
    pooling A (``model.condition = 'superres'``; None: unconditional on images); sr_sigma_y: its training
    measurement noise in model units."""

    m: Any
    spec: DataSpec
    num_classes: int
    net_module: Any
    tx: Any
    ema_decay: float
    kind: str
    discrete: bool
    process: Any
    time_scale: float
    lo: float
    hi: float
    scale_data: bool
    num_dims: int
    max_steps: int
    grid_name: str
    sigma_data: float
    clip_denoised: bool
    cond_op: LinearOperator | None = None
    sr_sigma_y: float = 0.0


def build_setup(config: ml_collections.ConfigDict, spec: DataSpec) -> Setup:
    """Validate ``config.model`` against ``spec`` and fix every static choice of the family."""
    m = config.model
    _validate(m, spec)
    num_classes = spec.num_classes if m.class_conditional else 0
    kind, discrete = m.parametrization, m.process == "discrete"
    ve_range = ({"sigma_min": float(m.get("ve_sigma_min", 0.01)), "sigma_max": float(m.get("ve_sigma_max", 50.0))}
                if m.process == "ve" else {})
    process: DiscreteSchedule | Any = (discrete_schedule(m.beta_schedule, int(m.num_timesteps)) if discrete
                                       else make_sde(m.process, **ve_range))
    max_steps = int(m.max_sample_steps)
    if discrete:
        max_steps = min(max_steps, process.num_steps)
    lo, hi = (float(v) for v in spec.value_range)
    sr3 = bool(m.get("condition", ""))
    cond_op = downsample(tuple(spec.shape), int(m.sr_scale)) if sr3 else None
    sr_sigma_y = 2.0 / (hi - lo) * float(m.get("sr_sigma_y", 0.0)) if sr3 else 0.0
    return Setup(
        m=m, spec=spec, num_classes=num_classes, net_module=build_network(m, spec, num_classes),
        tx=make_optimizer(config.optim), ema_decay=float(config.optim.get("ema_decay", 0.0)), kind=kind,
        discrete=discrete, process=process, time_scale=1.0 if discrete or kind == "edm" else 999.0, lo=lo, hi=hi,
        scale_data=spec.is_image, num_dims=math.prod(spec.shape), max_steps=max_steps,
        grid_name=m.grid or ("discrete" if discrete else "edm" if m.process == "edm" else "uniform"),
        sigma_data=float(m.sigma_data), clip_denoised=spec.is_image and bool(m.clip_denoised), cond_op=cond_op,
        sr_sigma_y=sr_sigma_y)


def to_model(s: Setup, x: jax.Array) -> jax.Array:
    """Data → model space: images from ``spec.value_range`` to [−1, 1]; vectors unchanged."""
    x = jnp.asarray(x, jnp.float32)
    return 2.0 * (x - s.lo) / (s.hi - s.lo) - 1.0 if s.scale_data else x


def from_model(s: Setup, x: jax.Array) -> jax.Array:
    """Model space → data (images clipped to ``spec.value_range``)."""
    return jnp.clip((x + 1.0) * 0.5 * (s.hi - s.lo) + s.lo, s.lo, s.hi) if s.scale_data else x


def network_input(x: jax.Array, cond: jax.Array | None) -> jax.Array:
    """SR3's network input concat([x_t, A⁺y]) on the channel axis (Saharia et al. 2022, Sec. 2: the upsampled
    low-resolution image concatenated to x_t); x unchanged without a condition. The MLP flattens it, so it
    sees the flattened concatenation."""
    return x if cond is None else jnp.concatenate([x, jnp.asarray(cond, x.dtype)], axis=-1)


def network_fn(s: Setup, params: PyTree, train: bool = False, key: jax.Array | None = None,
               cond: jax.Array | None = None) -> Callable:
    """``(x, t, label) -> output`` of the network with ``params`` (dropout keyed by ``key`` in training); with
    ``cond`` (SR3's A⁺y, x's shape) the network sees :func:`network_input` and its output keeps x's C
    channels (the U-Net has C output channels; the MLP's extra outputs are dropped)."""
    rngs = {"dropout": key} if key is not None else {}
    if cond is None:
        return lambda x, t, label: s.net_module.apply({"params": params}, x, t, label, train, rngs=rngs)
    c = int(s.spec.shape[-1])

    def net(x, t, label):  # classifier-free guidance stacks [x; x]: the condition is repeated alike
        u = jnp.concatenate([cond] * (x.shape[0] // cond.shape[0]), 0)
        return s.net_module.apply({"params": params}, network_input(x, u), t, label, train, rngs=rngs)[..., :c]

    return net


def sr_condition(s: Setup, x0: jax.Array, key: jax.Array) -> jax.Array:
    """SR3's condition of a model-space batch: A⁺(A x_0 + σ_y ε), A the average pooling ×``model.sr_scale``
    and A⁺ = s² Aᵀ its nearest-neighbour upsampling (:func:`~gm_jax.diffusion.operators.downsample`)."""
    y = s.cond_op.A(x0)
    return s.cond_op.pinv(y + s.sr_sigma_y * jax.random.normal(key, y.shape, y.dtype))


def init(s: Setup, key: jax.Array, example_batch: Batch) -> TrainState:
    x = to_model(s, example_batch["x"])
    label = jnp.zeros((x.shape[0],), jnp.int32) if s.num_classes else None
    x = network_input(x, None if s.cond_op is None else jnp.zeros_like(x))
    params = s.net_module.init(key, x, jnp.zeros((x.shape[0],)), label)["params"]
    return TrainState.create(key, params, s.tx, use_ema=s.ema_decay > 0)


def draw_level(s: Setup, key: jax.Array, b: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(network time t, α, σ) per example for training: t ~ U{0..T−1} (Ho et al. 2020, Alg. 1), EDM's
    log-normal σ (Karras et al. 2022, Sec. 5) or t ~ U(t_min, T) (Song et al. 2021, eq. 7)."""
    if s.discrete:
        idx = jax.random.randint(key, (b,), 0, s.process.num_steps)
        alpha, sigma = s.process.alpha_sigma(idx)
        return idx.astype(jnp.float32), alpha, sigma
    if s.m.process == "edm":
        sigma = losses.sample_training_sigma(key, b)
        return sigma, jnp.ones_like(sigma), sigma
    t = jax.random.uniform(key, (b,), minval=float(s.m.t_min), maxval=s.process.T)
    alpha, sigma = s.process.alpha_sigma(t)
    return t, alpha, sigma


def denoising_loss(s: Setup, params: PyTree, x0: jax.Array, label: jax.Array | None, key: jax.Array,
                   train: bool, cond: jax.Array | None = None) -> jax.Array:
    """Per-example training objective at x_t = α x_0 + σ ε: ε-MSE (Ho et al. 2020, eq. 14), denoising score
    matching (Vincent 2011; Song et al. 2021, eq. 7), EDM's weighted loss (Karras et al. 2022, eq. 8) or
    the MSE of the x_0 / v prediction (Salimans & Ho 2022). SR3 models (Saharia et al. 2022, eq. 6) condition
    on ``cond`` = A⁺y, by default :func:`sr_condition` of the batch x_0 itself."""
    k_t, k_n, k_d = jax.random.split(key, 3)
    if s.cond_op is not None and cond is None:
        cond = sr_condition(s, x0, jax.random.fold_in(key, 3))
    return objective(s, network_fn(s, params, train, k_d if train else None, cond), x0, label, k_t, k_n)


def objective(s: Setup, net: Callable, x0: jax.Array, label: jax.Array | None, key_level: jax.Array,
              key_noise: jax.Array) -> jax.Array:
    """Per-example loss of the network ``net(x, t, label)`` at x_t = α x_0 + σ ε, the level drawn by
    :func:`draw_level` from ``key_level`` and ε from ``key_noise``: the objectives of :func:`denoising_loss`
    (which any network closure can share, e.g. one that also attends to text)."""
    b = x0.shape[0]
    t, alpha, sigma = draw_level(s, key_level, b)
    noise = jax.random.normal(key_noise, x0.shape)
    shape = (b,) + (1,) * (x0.ndim - 1)
    a, sg = alpha.reshape(shape), sigma.reshape(shape)
    x_t = a * x0 + sg * noise
    if s.kind == "edm":
        d = network_x0("edm", net, x_t, t, a, sg, label, s.time_scale, s.sigma_data)
        return losses.edm_loss(d, x0, sigma / alpha, s.sigma_data)
    out = net(x_t, s.time_scale * t, label)
    if s.kind == "eps":
        return losses.eps_mse(out, noise)
    if s.kind == "score":
        return losses.denoising_score_matching(out, noise, sigma)
    return losses.prediction_mse(out, from_x0(s.kind, x0, x_t, a, sg))


def train_step(s: Setup, state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One optimizer step on the mean loss; labels replaced by the null label with probability
    ``model.label_dropout`` (classifier-free guidance training, Ho & Salimans 2022)."""
    k_drop, k_loss = jax.random.split(key)
    x0 = to_model(s, batch["x"])
    label = None
    if s.num_classes:
        label = jnp.asarray(batch["label"], jnp.int32)
        drop = jax.random.bernoulli(k_drop, float(s.m.label_dropout), label.shape)
        label = jnp.where(drop, s.num_classes, label)

    def loss_fn(params: PyTree) -> jax.Array:
        return jnp.mean(denoising_loss(s, params, x0, label, k_loss, True))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return apply_gradients(state, s.tx, grads, s.ema_decay), {"loss": loss}


# ----------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------


def narrowed_sampler_options(m: Any, options: tuple[Option, ...]) -> tuple[Option, ...]:
    """``options`` with the defaults that ``config.model`` sets (:data:`SAMPLER_DEFAULT_FIELDS`)."""
    out = []
    for o in options:
        field = SAMPLER_DEFAULT_FIELDS.get(o.name)
        out.append(o.narrowed(default=type(o.default)(m.get(field, o.default))) if field else o)
    return tuple(out)


def configured_sampler(m: Any, name: str) -> SamplerSpec:
    """The registered sampler ``name`` with its defaults narrowed to ``config.model``."""
    spec = get_sampler(name)
    return dataclasses.replace(spec, options=narrowed_sampler_options(m, spec.options))


def sample_options(s: Setup) -> tuple[Option, ...]:
    """The exact sampling options of this config: steps <= the grid length, label only when class-conditional,
    every default from ``config.model``."""
    m = s.m
    own = [SAMPLER.narrowed(default=m.sampler, choices=sampler_names()),
           STEPS.narrowed(default=int(m.sample_steps), high=s.max_steps),
           GUIDANCE.narrowed(default=float(m.guidance))]
    if s.num_classes:
        own.append(LABEL.narrowed(high=s.num_classes - 1))
    return tuple(own) + narrowed_sampler_options(m, all_sampler_options())


def sampling_denoiser(s: Setup, params: PyTree, label: jax.Array | None, guidance: jax.Array, num: int,
                      cond: jax.Array | None = None):
    """x̂_0 of the network: guided by ``label`` (classifier-free guidance scale ``guidance``), or with the
    null label when ``label`` is None; clipped to [−1, 1] for images when ``model.clip_denoised``. SR3 models
    take ``cond`` = A⁺y [num, ...], fixed through the chain (x̂_0(x_t, y), Saharia et al. 2022, Sec. 2)."""
    net = network_fn(s, params, cond=cond)
    if label is not None:
        denoiser = make_denoiser(s.kind, net, label, guidance, s.num_classes, s.time_scale, s.sigma_data)
    else:
        null = jnp.full((num,), s.num_classes, jnp.int32) if s.num_classes else None
        denoiser = make_denoiser(s.kind, net, null, 1.0, None, s.time_scale, s.sigma_data)
    if not s.clip_denoised:
        return denoiser
    return lambda x, t, a, s_: jnp.clip(denoiser(x, t, a, s_), -1.0, 1.0)


def sample_chain(s: Setup, sampler: SamplerSpec, num: int, conditional: bool, static: Mapping[str, Any]
                 ) -> Callable:
    """``run(params, key, steps, guidance, label, first_index, arrays, y) -> (x, info)``: prior draw and the
    sampler's chain (to be jitted; ``static`` are its code-selecting options, ``arrays`` the numeric ones).
    SR3 models: ``y`` [num, *A's output shape] is the model-space measurement, the denoiser conditioned on
    A⁺y through the whole chain (x ~ p(x | y)); ``None`` otherwise."""

    def run(params, key, steps, guidance, label, first_index, arrays, y=None):
        grid = make_grid(s.grid_name, s.process, steps, s.max_steps)
        cond = None if y is None else s.cond_op.pinv(y)
        denoiser = sampling_denoiser(s, params, label if conditional else None, guidance, num, cond)
        k_prior, k_chain = jax.random.split(key)
        x_T = prior_sample(k_prior, grid, (num,) + tuple(s.spec.shape), first_index)
        x, info = sampler(denoiser, k_chain, x_T, grid, first_index, **static, **arrays)
        return from_model(s, x), info

    return run


def _host_label(s: Setup, label: Any, num: int) -> np.ndarray | None:
    if label is None:
        return None
    require(s.num_classes > 0, "label given but the model is unconditional; drop label")
    label = np.broadcast_to(np.asarray(label, np.int32), (num,))
    require(bool(np.all((label >= 0) & (label < s.num_classes))),
            f"label must be in [0, {s.num_classes}), got values {sorted(set(label.tolist()))}")
    return label


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def check_steps_bound(s: Setup, given: Mapping[str, Any]) -> None:
    """The schedule's bound on ``steps`` in words (before the declared range, which says the same tersely)."""
    if _int_or_none(given.get("steps")) is not None and _int_or_none(given["steps"]) > s.max_steps:
        raise ConfigError(f"--steps must be <= {s.max_steps} (the schedule length / model.max_sample_steps), "
                          f"got {given['steps']}")


def sample(s: Setup, compiled: dict, params: PyTree, key: jax.Array, num: int, first_index: int = 0,
           **options: Any) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` samples in ``spec.value_range`` and ``{"nfe": ...}``. ``options``: the declared sampling
    options (``None``: not given; defaults from ``config.model``); an option of another sampler is refused
    naming the samplers that take it. Numbers are runtime arrays (no recompilation); ``label`` (int or
    [num]) needs a class-conditional model. Sample i uses the keys of index ``first_index + i``.
    ``compiled``: the family's cache of jitted chains."""
    given = {k: v for k, v in options.items() if v is not None}
    return _draw(s, compiled, params, key, int(num), first_index, given, None)


def _draw(s: Setup, compiled: dict, params: PyTree, key: jax.Array, num: int, first_index: int,
          given: dict[str, Any], y: np.ndarray | None) -> tuple[jax.Array, dict[str, Any]]:
    """:func:`sample`'s body; ``y``: SR3's model-space measurements [num, ...] (None: unconditional)."""
    label = _host_label(s, given.pop("label", None), int(num))
    require(int(num) >= 1, f"num must be >= 1, got {num}")
    sampler = configured_sampler(s.m, str(given.pop("sampler", s.m.sampler)))
    declared = sample_options(s)
    own = {o.name: o for o in declared}
    check_steps_bound(s, given)
    given = check_options(given, declared, "family 'diffusion'")
    steps = own["steps"].check(given.pop("steps", own["steps"].default))  # the config's defaults checked too
    guidance = own["guidance"].check(given.pop("guidance", own["guidance"].default))
    opts = sampler.check(given)
    kinds = {o.name: o.kind for o in sampler.options}
    static = {k: v for k, v in opts.items() if kinds[k] == "str"}
    arrays = {k: (np.float32(v) if kinds[k] == "float" else np.int32(v)) for k, v in opts.items() if k not in static}
    cache_key = (sampler.name, int(num), label is not None, tuple(sorted(static.items())), y is not None)
    if cache_key not in compiled:
        compiled[cache_key] = jax.jit(sample_chain(s, sampler, int(num), label is not None, static))
    label = np.zeros((num,), np.int32) if label is None else label
    x, info = compiled[cache_key](params, key, np.int32(steps), np.float32(guidance), label, np.int32(first_index),
                                  arrays, y)
    return x, {"nfe": int(info["nfe"])}


def sr3_sample(s: Setup, compiled: dict, eval_batches: Callable | None, params: PyTree, key: jax.Array, num: int,
               first_index: int = 0, **options: Any) -> tuple[jax.Array, dict[str, Any]]:
    """``sample`` of an SR3 model: super-resolutions x ~ p(x | y) of the measurements y = A x of the first
    ``num`` eval images (cycled), with the sampling options of :func:`sample`; a low-res input of one's own
    goes through :func:`restore` with method ``sr3``."""
    require(eval_batches is not None, "an SR3 model (model.condition 'superres') samples given low-res images; "
            "use gm-jax restore --task superres --method sr3 --input IMG")
    n = int(num)
    require(n >= 1, f"num must be >= 1, got {num}")
    x = np.asarray(next(iter(eval_batches(n)))["x"], np.float32)  # the first eval batch, cycled to num
    x = x[np.arange(n) % x.shape[0]]
    y = measurement_to_model(s, s.cond_op, s.cond_op.A(jnp.asarray(x)))
    given = {k: v for k, v in options.items() if v is not None}
    return _draw(s, compiled, params, key, n, first_index, given, np.asarray(y))


# ----------------------------------------------------------------------------------------------------------
# Inverse problems and editing (images only)
# ----------------------------------------------------------------------------------------------------------


def _method_options() -> tuple[Option, ...]:
    """Every inverse method's own options but σ_y (a property of the measurement, declared once); an option
    several methods take with different defaults is declared with default ``None`` (each method's own)."""
    decls: dict[str, list[tuple[str, Option]]] = {}
    for method, spec in INVERSE_SAMPLERS.items():
        for o in spec.options:
            decls.setdefault(o.name, []).append((method, o))
    out = []
    for name, pairs in decls.items():
        if name == "sigma_y":
            continue
        o = pairs[0][1]
        if len(pairs) > 1:
            defaults = ", ".join(f"{m} {p.default:g}" for m, p in pairs)
            same = len({p.default for _, p in pairs}) == 1
            o = o.narrowed(help=f"{o.help}; for {', '.join(m for m, _ in pairs)} (defaults: {defaults})",
                           default=o.default if same else None)
        out.append(o)
    return tuple(out)


METHOD = Option("method", "str", "posterior sampler of the inverse problem (sr3: SR3 models' own conditional "
                "network)", "ddrm", choices=tuple(INVERSE_SAMPLERS) + tuple(CONDITIONED_METHODS))
SIGMA_Y = Option("sigma_y", "float", "measurement noise std σ_y of y = A x + σ_y ε in the data's units "
                 "(repaint and ddnm assume 0)", 0.0, low=0.0)
SR3_SAMPLER = SAMPLER.narrowed(help="sampler of an SR3 model's chain (method sr3 only; default model.sampler)")
RESTORE_OPTIONS: tuple[Option, ...] = (METHOD, STEPS, SIGMA_Y, GUIDANCE, LABEL, SR3_SAMPLER) + _method_options()
# method -> the names of the options it takes: the zero-shot posterior samplers in order, then the
# conditioned ones (sr3: no options)
RESTORE_METHODS: dict[str, list[str]] = {**{m: [o.name for o in spec.options] for m, spec in INVERSE_SAMPLERS.items()},
                                         **{m: ["sampler"] for m in CONDITIONED_METHODS}}
EDIT_OPTIONS: tuple[Option, ...] = (STRENGTH, STEPS, SAMPLER, GUIDANCE, LABEL)


def _conditioning_options(s: Setup) -> list[Option]:
    if not s.num_classes:
        return []
    return [GUIDANCE.narrowed(default=float(s.m.guidance)), LABEL.narrowed(high=s.num_classes - 1)]


def restore_options(s: Setup) -> tuple[Option, ...]:
    """The exact restoration options of this config: steps <= the grid length, label and guidance only when
    class-conditional; SR3 models take method sr3 only and, instead of method options, the registered sampler
    of their chain (default ``model.sampler``)."""
    steps = STEPS.narrowed(default=int(s.m.sample_steps), high=s.max_steps)
    if s.cond_op is not None:
        method = METHOD.narrowed(default=next(iter(CONDITIONED_METHODS)), choices=tuple(CONDITIONED_METHODS))
        return (method, steps, SIGMA_Y, *_conditioning_options(s), SR3_SAMPLER.narrowed(default=s.m.sampler))
    method = METHOD.narrowed(choices=tuple(INVERSE_SAMPLERS))
    return (method, steps, SIGMA_Y, *_conditioning_options(s)) + _method_options()


def edit_options(s: Setup) -> tuple[Option, ...]:
    """The exact editing options of this config (the sampler's default is ``model.sampler``)."""
    steps = STEPS.narrowed(default=int(s.m.sample_steps), high=s.max_steps)
    return (STRENGTH, steps, SAMPLER.narrowed(default=s.m.sampler), *_conditioning_options(s))


def data_scale(s: Setup) -> tuple[float, float]:
    """(a, b) of the map to model space x_m = a x + b (:func:`to_model`: a = 2/(hi − lo), b = −1 − a lo)."""
    a = 2.0 / (s.hi - s.lo)
    return a, -1.0 - a * s.lo


def measurement_to_model(s: Setup, op: LinearOperator, y: jax.Array) -> jax.Array:
    """The measurement of the model-space image: A(a x + b 1) = a A x + b A 1 for a linear A, so
    y_m = a y + b A 1 (exact for every operator; for a mask, b on the observed pixels only)."""
    a, b = data_scale(s)
    return a * y + b * op.A(jnp.ones((1,) + op.x_shape, y.dtype))


def restore_chain(s: Setup, method: str, total: int, conditional: bool) -> Callable:
    """``run(params, key, steps, guidance, label, first_index, op, y, arrays) -> (x, info)``: the prior draw
    x_T ~ N(0, σ_0² I) and the posterior sampler ``method`` of :data:`INVERSE_SAMPLERS` on the sampler grid
    (to be jitted; ``y`` in the data's units, mapped by :func:`measurement_to_model`)."""

    def run(params, key, steps, guidance, label, first_index, op, y, arrays):
        grid = make_grid(s.grid_name, s.process, steps, s.max_steps)
        denoiser = sampling_denoiser(s, params, label if conditional else None, guidance, total)
        k_prior, k_chain = jax.random.split(key)
        x_T = prior_sample(k_prior, grid, (total,) + tuple(s.spec.shape), first_index)
        x, info = inverse_restore(method, denoiser, k_chain, x_T, grid, op, measurement_to_model(s, op, y),
                                  first_index, **arrays)
        return from_model(s, x), info

    return run


def _check_measurement(s: Setup, op: LinearOperator, y: Any) -> np.ndarray:
    y = np.asarray(y, np.float32)
    require(tuple(op.x_shape) == tuple(s.spec.shape),
            f"operator {op.name!r} is built for images {op.x_shape}, but the model's are {tuple(s.spec.shape)}; "
            "build it for the model's image shape")
    require(y.ndim == len(op.y_shape) + 1 and tuple(y.shape[1:]) == tuple(op.y_shape) and y.shape[0] >= 1,
            f"y has shape {tuple(y.shape)}, expected [B, {', '.join(map(str, op.y_shape))}]; measure with op.A")
    require(bool(np.all(np.isfinite(y))), "y holds NaN or inf; measure a finite image")
    return y


def _numeric(options: tuple[Option, ...], values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    kinds = {o.name: o.kind for o in options}
    return {k: (np.float32(v) if kinds[k] == "float" else np.int32(v)) for k, v in values.items()}


def _method_arrays(s: Setup, method: str, given: dict[str, Any], sigma_y: float) -> dict[str, np.ndarray]:
    """The method's options (defaults filled, another method's refused), σ_y in model units (a σ_y)."""
    spec = INVERSE_SAMPLERS[method]
    if "sigma_y" in {o.name for o in spec.options}:
        given = {**given, "sigma_y": data_scale(s)[0] * sigma_y}
    return _numeric(spec.options, spec.check(method, given))


def _draw_labels(s: Setup, label: Any, num: int, b: int) -> np.ndarray | None:
    """The label of every draw [num B]: one int for all, one per input [B] (repeated for each draw) or one
    per draw [num B]."""
    if label is None:
        return None
    size = int(np.size(label))
    require(np.ndim(label) <= 1 and size in (1, b, num * b),
            f"label must be one int, one per input ({b}) or one per draw ({num * b}), got shape {np.shape(label)}")
    return _host_label(s, np.tile(np.reshape(label, -1), num) if size == b and b > 1 else label, num * b)


def _tile(x: np.ndarray, num: int) -> np.ndarray:
    """[B, ...] -> [num B, ...]: row j B + i is example i (draw j of it)."""
    return np.concatenate([x] * num, axis=0)


def restore(s: Setup, compiled: dict, params: PyTree, key: jax.Array, y: Any, op: LinearOperator,
            method: str | None = None, num: int = 1, first_index: int = 0, **options: Any
            ) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` posterior samples x ~ p(x | y) per measurement y [B, *op.y_shape] of y = A x + σ_y ε (in the
    data's value range and units), as [num, B, *image shape] in the data's range, and ``{"nfe": ...}``.
    ``method``: a name of :data:`INVERSE_SAMPLERS` (default ``ddrm``); ``options``: the declared restoration
    options (``None``: not given): steps, sigma_y, the method's own, and label/guidance for class-conditional
    models (label-conditional denoiser; unconditional otherwise). Draw j of measurement i uses the keys of
    index ``first_index + j B + i``. Numbers are arrays (no recompilation); ``compiled``: the jit cache.
    SR3 models (``model.condition = 'superres'``) restore with method ``sr3`` only (:func:`_restore_sr3`)."""
    default = next(iter(CONDITIONED_METHODS)) if s.cond_op is not None else METHOD.default
    method = METHOD.check(default if method is None else method)
    y = _check_measurement(s, op, y)
    n, b = int(num), y.shape[0]
    require(n >= 1, f"num must be >= 1, got {num}")
    given = {k: v for k, v in options.items() if v is not None}
    label = _draw_labels(s, given.pop("label", None), n, b)
    if _check_sr3(s, method, op):
        return _restore_sr3(s, compiled, params, key, y, op, n, first_index, label, given)
    check_steps_bound(s, given)
    declared = {o.name: o for o in restore_options(s)}
    given = check_options(given, tuple(declared.values()), "restoration with family 'diffusion'")
    steps = declared["steps"].check(given.pop("steps", declared["steps"].default))
    guidance = given.pop("guidance", float(s.m.guidance))
    arrays = _method_arrays(s, method, given, float(given.pop("sigma_y", 0.0)))
    cache_key = ("restore", method, n * b, label is not None)
    if cache_key not in compiled:
        compiled[cache_key] = jax.jit(restore_chain(s, method, n * b, label is not None))
    label = np.zeros((n * b,), np.int32) if label is None else label
    x, info = compiled[cache_key](params, key, np.int32(steps), np.float32(guidance), label, np.int32(first_index),
                                  op, _tile(y, n), arrays)
    return x.reshape((n, b) + tuple(s.spec.shape)), {"nfe": int(info["nfe"])}


def _check_sr3(s: Setup, method: str, op: LinearOperator) -> bool:
    """Whether this is an SR3 restoration; one line for an SR3 method on an unconditional model, a zero-shot
    method on an SR3 model, or an operator other than the model's own pooling A (checked on a probe image)."""
    if s.cond_op is None:
        require(method not in CONDITIONED_METHODS, f"method {method!r} needs a model trained with "
                "model.condition 'superres' (SR3), this one is unconditional; use ddrm, ddnm, dps, pigdm or "
                "repaint, or train with --config.model.condition=superres")
        return False
    scale = int(s.m.sr_scale)
    require(method in CONDITIONED_METHODS, f"method {method!r} needs an unconditional model, this one is SR3 "
            f"(model.condition 'superres', x{scale}); use --method sr3")
    probe = jnp.asarray(np.random.RandomState(0).rand(1, *s.spec.shape), jnp.float32)
    same = tuple(op.y_shape) == tuple(s.cond_op.y_shape) and bool(
        jnp.allclose(op.A(probe), s.cond_op.A(probe), atol=1e-5))
    require(same, f"method 'sr3' of this model super-resolves x{scale} average pooling (model.sr_scale), not "
            f"operator {op.name!r}; pass --task superres --scale {scale}")
    return True


def _restore_sr3(s: Setup, compiled: dict, params: PyTree, key: jax.Array, y: np.ndarray, op: LinearOperator,
                 n: int, first_index: int, label: np.ndarray | None, given: dict[str, Any]
                 ) -> tuple[jax.Array, dict[str, Any]]:
    """SR3 (Saharia et al. 2022): ``n`` draws x ~ p(x | y) per measurement with the model's own conditional
    network, the registered sampler ``model.sampler`` (its options from ``config.model``) run with A⁺y fixed
    through the chain (:func:`sample_chain`), or the registered sampler ``sampler`` given; σ_y is that of the
    input's measurement (the network was trained at ``model.sr_sigma_y``), no other method's options."""
    check_steps_bound(s, given)
    given = check_options(given, restore_options(s), "restoration with an SR3 model")
    given.pop("sigma_y", None)
    if label is not None:
        given["label"] = label
    b = y.shape[0]
    y_m = np.asarray(measurement_to_model(s, op, jnp.asarray(y)))
    x, info = _draw(s, compiled, params, key, n * b, first_index, given, _tile(y_m, n))
    return x.reshape((n, b) + tuple(s.spec.shape)), info


def edit_chain(s: Setup, sampler: SamplerSpec, total: int, conditional: bool, invert: bool,
               static: Mapping[str, Any]) -> Callable:
    """``run(params, key, steps, guidance, label, strength, first_index, x, arrays) -> (x_edit, info)``:
    SDEdit (Meng et al. 2022) with ``sampler`` from the strength's grid point, or with ``invert`` DDIM
    inversion with the unconditional denoiser and deterministic DDIM back with the (label-)conditional one
    (:func:`~gm_jax.diffusion.editing.invert_and_regenerate`); ``x`` in the data's range."""

    def run(params, key, steps, guidance, label, strength, first_index, x, arrays):
        grid = make_grid(s.grid_name, s.process, steps, s.max_steps)
        target = sampling_denoiser(s, params, label if conditional else None, guidance, total)
        x = to_model(s, x)
        if invert:
            source = sampling_denoiser(s, params, None, guidance, total)
            out, info = invert_and_regenerate(source, target, x, grid, strength)
        else:
            out, info = sdedit(sampler, target, key, x, grid, strength, first_index, **static, **arrays)
        return from_model(s, out), {"nfe": info["nfe"]}

    return run


def _check_images(s: Setup, x: Any) -> np.ndarray:
    x = np.asarray(x, np.float32)
    shape = tuple(s.spec.shape)
    require(x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape and x.shape[0] >= 1,
            f"images have shape {tuple(x.shape)}, expected [B, {', '.join(map(str, shape))}]; pass the model's "
            "image shape")
    require(bool(np.all(np.isfinite(x))), "images hold NaN or inf; pass finite images")
    return x


def edit(s: Setup, compiled: dict, params: PyTree, key: jax.Array, x: Any, strength: float | None, num: int = 1,
         label: Any = None, invert: bool = False, first_index: int = 0, **options: Any
         ) -> tuple[jax.Array, dict[str, Any]]:
    """``num`` edits per image of ``x`` [B, *image shape] (data range) as [num, B, ...] and ``{"nfe": ...}``:
    SDEdit at ``strength`` s ∈ (0, 1] (``None``: 0.5; :func:`~gm_jax.diffusion.editing.sdedit`; the last round(s N) of N
    grid steps) with the declared ``sampler`` (default ``model.sampler``, its options from ``config.model``),
    or with ``invert`` DDIM inversion and regeneration (deterministic: the ``num`` edits are equal). ``label``
    (class-conditional models) conditions the regeneration, guided by ``guidance``."""
    x = _check_images(s, x)
    n, b = int(num), x.shape[0]
    require(n >= 1, f"num must be >= 1, got {num}")
    given = {k: v for k, v in options.items() if v is not None}
    require(not (invert and "sampler" in given), "--invert regenerates with deterministic DDIM; drop --sampler")
    label = _draw_labels(s, label, n, b)
    check_steps_bound(s, given)
    declared = {o.name: o for o in edit_options(s)}
    strength = STRENGTH.default if strength is None else strength
    given = check_options({**given, "strength": strength}, tuple(declared.values()), "editing with family 'diffusion'")
    steps = declared["steps"].check(given.get("steps", declared["steps"].default))
    sampler = configured_sampler(s.m, str(given.get("sampler", s.m.sampler)))
    opts = sampler.check({})
    static = {k: v for k, v in opts.items() if k in sampler.static_options}
    arrays = _numeric(sampler.options, {k: v for k, v in opts.items() if k not in static})
    cache_key = ("edit", sampler.name, n * b, label is not None, bool(invert), tuple(sorted(static.items())))
    if cache_key not in compiled:
        compiled[cache_key] = jax.jit(edit_chain(s, sampler, n * b, label is not None, bool(invert), static))
    label = np.zeros((n * b,), np.int32) if label is None else label
    out, info = compiled[cache_key](params, key, np.int32(steps), np.float32(given.get("guidance", s.m.guidance)),
                                    label, np.float32(given["strength"]), np.int32(first_index), _tile(x, n), arrays)
    return out.reshape((n, b) + tuple(s.spec.shape)), {"nfe": int(info["nfe"])}


# ----------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------


def x0_fn(s: Setup, params: PyTree, label: jax.Array | None, cond: jax.Array | None = None) -> Callable:
    """``(x_t, index, α, σ) -> x̂_0`` of the network (for the variational bound; SR3: given ``cond``)."""
    net = network_fn(s, params, cond=cond)
    return lambda x_t, i, alpha, sigma: network_x0(s.kind, net, x_t, i.astype(jnp.float32), alpha, sigma, label,
                                                   s.time_scale, s.sigma_data)


def evaluate(s: Setup, params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
    """``loss`` (the training objective, no dropout); for the discrete process also the variational
    bound (Ho et al. 2020, eq. 5) as ``nll`` (nats/example) and ``bits_per_dim`` — discretized decoder
    on quantized data (``spec.levels``), continuous Gaussian decoder otherwise. SR3 models: both given the
    batch's own A⁺y (the bound is then on −log p(x | y))."""
    x0 = to_model(s, batch["x"])
    label = jnp.asarray(batch["label"], jnp.int32) if s.num_classes else None
    k_loss, k_vlb = jax.random.split(key)
    cond = None if s.cond_op is None else sr_condition(s, x0, jax.random.fold_in(key, 3))
    out = {"loss": jnp.mean(denoising_loss(s, params, x0, label, k_loss, False, cond))}
    if s.discrete:
        levels = int(s.spec.levels) if s.scale_data else 0
        num_t = int(s.m.eval_num_t) or None
        nats = losses.vlb(s.process, k_vlb, x0, x0_fn(s, params, label, cond), num_t, levels=levels)
        if not (s.scale_data and levels):  # continuous density of the data in its own units (images: from [−1, 1])
            nats = nats + (s.num_dims * jnp.log((s.hi - s.lo) / 2.0) if s.scale_data else 0.0)
        out.update(nll=jnp.mean(nats), bits_per_dim=jnp.mean(losses.bits_per_dim(nats, s.num_dims)))
    return out


def make_family(config: ml_collections.ConfigDict, spec: DataSpec, inputs: FamilyInputs = FamilyInputs()
                ) -> Family:
    """Diffusion family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``: the module's
    pure functions bound to one :class:`Setup`. ``inputs.eval_batches`` gives an SR3 model's ``sample`` its
    low-res images (:func:`sr3_sample`); SR3 models restore with ``sr3`` and do not edit."""
    s = build_setup(config, spec)
    images = {}
    if s.scale_data:  # inverse problems and editing need images
        images = dict(restore=functools.partial(restore, s, {}), restore_options=restore_options(s))
        if s.cond_op is None:
            images.update(edit=functools.partial(edit, s, {}), edit_options=edit_options(s))
    draw = (functools.partial(sample, s, {}) if s.cond_op is None
            else functools.partial(sr3_sample, s, {}, inputs.eval_batches))
    return Family(name="diffusion", init=functools.partial(init, s), train_step=functools.partial(train_step, s),
                  sample=draw, evaluate=jax.jit(functools.partial(evaluate, s)),
                  sample_options=sample_options(s), conditioning=("label",) if s.num_classes else (), **images)
