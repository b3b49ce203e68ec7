"""The diffusion family behind the common step protocol (gm_jax.core.family).

``config.model`` fields are listed in :func:`model_defaults`; ``config.optim`` goes to
``gm_jax.core.make_optimizer`` (EMA of the parameters when ``config.optim.ema_decay > 0``).

Images are mapped from ``spec.value_range`` to [−1, 1] for the model and back (clipped) for samples;
vectors (toy data) are used as they are. With labelled data and ``model.class_conditional`` the network
gets the label, replaced by the null label with probability ``model.label_dropout`` during training, so
that sampling can use classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gm_jax.core import Batch, DataSpec, Family, Metrics, PyTree, TrainState, apply_gradients
from gm_jax.core.errors import check_choice, require
from gm_jax.core.optim import make_optimizer
from gm_jax.diffusion import losses
from gm_jax.diffusion.networks import TimeConditionedMLP
from gm_jax.diffusion.parametrization import PARAMETRIZATIONS, from_x0, make_denoiser, network_x0
from gm_jax.diffusion.samplers import check_sampler_args, get_sampler, prior_sample
from gm_jax.diffusion.schedules import DiscreteSchedule, discrete_schedule, make_grid, make_sde
from gm_jax.nn.precision import compute_dtype
from gm_jax.nn.unet import UNet, unet_config

PROCESSES = ("discrete", "vp", "subvp", "ve", "edm")


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
    c.sampler = "ddim"              # see gm_jax.diffusion.samplers.SAMPLERS
    c.grid = ""                     # 'discrete' | 'uniform' | 'edm'; '' picks by process
    c.sample_steps = 50
    c.max_sample_steps = 1000       # static grid length: steps up to this never recompile
    c.eta = 0.0                     # DDIM η
    c.guidance = 1.0                # classifier-free guidance scale w (1: conditional only)
    c.pc_snr = 0.16                 # PC Langevin corrector target SNR
    c.pc_corrector_steps = 1
    c.langevin_step_lr = 2e-5       # annealed Langevin ε
    c.langevin_steps = 5            # annealed Langevin steps per level
    c.eval_num_t = 0                # VLB: 0 = all T terms, else L_0 + L_T exact and this many stratified KL terms
    c.clip_denoised = True          # images: clip x̂₀ to [−1, 1] while sampling (Ho et al. 2020's sampler)
    c.dtype = "float32"             # U-Net computation dtype: 'float32' | 'bfloat16' (parameters stay float32)
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


def build_network(m: Any, spec: DataSpec, num_classes: int) -> Any:
    """The U-Net or the time-conditioned MLP named by ``model.network``."""
    if m.network == "mlp":
        return TimeConditionedMLP(tuple(m.mlp_hidden), int(m.mlp_emb_dim), num_classes)
    kwargs = unet_config(m.unet, num_classes=num_classes, dtype=compute_dtype(m))
    if m.dropout >= 0:
        kwargs["dropout"] = float(m.dropout)
    return UNet(**kwargs)


def make_family(config: ml_collections.ConfigDict, spec: DataSpec) -> Family:
    """Diffusion family from ``config.model`` (see :func:`model_defaults`) and ``config.optim``."""
    m = config.model
    _validate(m, spec)
    num_classes = spec.num_classes if m.class_conditional else 0
    net_module = build_network(m, spec, num_classes)
    tx = make_optimizer(config.optim)
    ema_decay = float(config.optim.get("ema_decay", 0.0))
    kind = m.parametrization
    discrete = m.process == "discrete"
    ve_range = ({"sigma_min": float(m.get("ve_sigma_min", 0.01)), "sigma_max": float(m.get("ve_sigma_max", 50.0))}
                if m.process == "ve" else {})
    process: DiscreteSchedule | Any = (discrete_schedule(m.beta_schedule, int(m.num_timesteps)) if discrete
                                       else make_sde(m.process, **ve_range))
    time_scale = 1.0 if discrete or kind == "edm" else 999.0
    lo, hi = (float(v) for v in spec.value_range)
    scale_data = spec.is_image
    num_dims = math.prod(spec.shape)
    max_steps = int(m.max_sample_steps)
    if discrete:
        max_steps = min(max_steps, process.num_steps)
    grid_name = m.grid or ("discrete" if discrete else "edm" if m.process == "edm" else "uniform")
    sigma_data = float(m.sigma_data)
    clip_denoised = scale_data and bool(m.clip_denoised)

    def to_model(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        return 2.0 * (x - lo) / (hi - lo) - 1.0 if scale_data else x

    def from_model(x: jax.Array) -> jax.Array:
        return jnp.clip((x + 1.0) * 0.5 * (hi - lo) + lo, lo, hi) if scale_data else x

    def network(params: PyTree, train: bool = False, key: jax.Array | None = None):
        rngs = {"dropout": key} if key is not None else {}
        return lambda x, t, label: net_module.apply({"params": params}, x, t, label, train, rngs=rngs)

    def init(key: jax.Array, example_batch: Batch) -> TrainState:
        x = to_model(example_batch["x"])
        label = jnp.zeros((x.shape[0],), jnp.int32) if num_classes else None
        params = net_module.init(key, x, jnp.zeros((x.shape[0],)), label)["params"]
        return TrainState.create(key, params, tx, use_ema=ema_decay > 0)

    def draw_level(key: jax.Array, b: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(network time t, α, σ) per example for training."""
        if discrete:
            idx = jax.random.randint(key, (b,), 0, process.num_steps)
            alpha, sigma = process.alpha_sigma(idx)
            return idx.astype(jnp.float32), alpha, sigma
        if m.process == "edm":
            sigma = losses.sample_training_sigma(key, b)
            return sigma, jnp.ones_like(sigma), sigma
        t = jax.random.uniform(key, (b,), minval=float(m.t_min), maxval=process.T)
        alpha, sigma = process.alpha_sigma(t)
        return t, alpha, sigma

    def denoising_loss(params: PyTree, x0: jax.Array, label: jax.Array | None, key: jax.Array,
                       train: bool) -> jax.Array:
        k_t, k_n, k_d = jax.random.split(key, 3)
        b = x0.shape[0]
        t, alpha, sigma = draw_level(k_t, b)
        noise = jax.random.normal(k_n, x0.shape)
        shape = (b,) + (1,) * (x0.ndim - 1)
        a, s = alpha.reshape(shape), sigma.reshape(shape)
        x_t = a * x0 + s * noise
        net = network(params, train, k_d if train else None)
        if kind == "edm":
            d = network_x0("edm", net, x_t, t, a, s, label, time_scale, sigma_data)
            return losses.edm_loss(d, x0, sigma / alpha, sigma_data)
        out = net(x_t, time_scale * t, label)
        if kind == "eps":
            return losses.eps_mse(out, noise)
        if kind == "score":
            return losses.denoising_score_matching(out, noise, sigma)
        return losses.prediction_mse(out, from_x0(kind, x0, x_t, a, s))

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        k_drop, k_loss = jax.random.split(key)
        x0 = to_model(batch["x"])
        label = None
        if num_classes:
            label = jnp.asarray(batch["label"], jnp.int32)
            drop = jax.random.bernoulli(k_drop, float(m.label_dropout), label.shape)
            label = jnp.where(drop, num_classes, label)

        def loss_fn(params: PyTree) -> jax.Array:
            return jnp.mean(denoising_loss(params, x0, label, k_loss, True))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return apply_gradients(state, tx, grads, ema_decay), {"loss": loss}

    extra_args = {
        "ddim": lambda eta: {"eta": eta},
        "pc": lambda eta: {"snr": jnp.float32(m.pc_snr), "n_corrector": jnp.int32(m.pc_corrector_steps)},
        "annealed_langevin": lambda eta: {"step_lr": jnp.float32(m.langevin_step_lr),
                                          "n_inner": jnp.int32(m.langevin_steps)},
    }
    compiled: dict[tuple, Any] = {}

    def sample_fn(sampler: str, num: int, conditional: bool):
        def run(params, key, steps, eta, guidance, label, first_index):
            grid = make_grid(grid_name, process, steps, max_steps)
            net = network(params)
            if conditional:
                denoiser = make_denoiser(kind, net, label, guidance, num_classes, time_scale, sigma_data)
            else:
                null = jnp.full((num,), num_classes, jnp.int32) if num_classes else None
                denoiser = make_denoiser(kind, net, null, 1.0, None, time_scale, sigma_data)
            if clip_denoised:
                unclipped = denoiser
                denoiser = lambda x, t, a, s_: jnp.clip(unclipped(x, t, a, s_), -1.0, 1.0)
            k_prior, k_chain = jax.random.split(key)
            x_T = prior_sample(k_prior, grid, (num,) + tuple(spec.shape), first_index)
            kwargs = extra_args.get(sampler, lambda e: {})(eta)
            x, info = get_sampler(sampler)(denoiser, k_chain, x_T, grid, first_index=first_index, **kwargs)
            return from_model(x), info

        return jax.jit(run)

    def sample(params: PyTree, key: jax.Array, num: int, sampler: str | None = None, steps: int | None = None,
               eta: float | None = None, guidance: float | None = None, label: Any = None,
               first_index: int = 0) -> tuple[jax.Array, dict[str, Any]]:
        """``num`` samples in ``spec.value_range`` and ``{"nfe": ...}``. ``steps``, ``eta``, ``guidance`` and
        ``label`` are runtime arrays (no recompilation); ``label`` (int or [num]) needs labelled data.
        Sample i uses the keys of index ``first_index + i``."""
        sampler = sampler or m.sampler
        steps = int(m.sample_steps if steps is None else steps)
        eta = float(m.eta if eta is None else eta)
        guidance = float(m.guidance if guidance is None else guidance)
        check_sampler_args(sampler, steps, max_steps, eta, guidance)
        require(int(num) >= 1, f"num must be >= 1, got {num}")
        conditional = label is not None
        if conditional:  # host-side checks with numpy (no device work, nothing to compile)
            require(num_classes > 0, "label given but the model is unconditional; drop label")
            label = np.broadcast_to(np.asarray(label, np.int32), (num,))
            require(bool(np.all((label >= 0) & (label < num_classes))),
                    f"label must be in [0, {num_classes}), got values {sorted(set(label.tolist()))}")
        else:
            label = np.zeros((num,), np.int32)
        cache_key = (sampler, int(num), conditional)
        if cache_key not in compiled:
            compiled[cache_key] = sample_fn(*cache_key)
        x, info = compiled[cache_key](params, key, np.int32(steps), np.float32(eta), np.float32(guidance),
                                      label, np.int32(first_index))
        return x, {"nfe": int(info["nfe"])}

    def x0_fn(params: PyTree, label: jax.Array | None):
        net = network(params)
        return lambda x_t, i, alpha, sigma: network_x0(kind, net, x_t, i.astype(jnp.float32), alpha, sigma, label,
                                                       time_scale, sigma_data)

    @jax.jit
    def evaluate(params: PyTree, batch: Batch, key: jax.Array) -> Metrics:
        """``loss`` (the training objective, no dropout); for the discrete process also the variational
        bound (Ho et al. 2020, eq. 5) as ``nll`` (nats/example) and ``bits_per_dim`` — discretized decoder
        on quantized data (``spec.levels``), continuous Gaussian decoder otherwise."""
        x0 = to_model(batch["x"])
        label = jnp.asarray(batch["label"], jnp.int32) if num_classes else None
        k_loss, k_vlb = jax.random.split(key)
        out = {"loss": jnp.mean(denoising_loss(params, x0, label, k_loss, False))}
        if discrete:
            levels = int(spec.levels) if scale_data else 0
            num_t = int(m.eval_num_t) or None
            nats = losses.vlb(process, k_vlb, x0, x0_fn(params, label), num_t, levels=levels)
            if scale_data and levels:
                bpd = losses.bits_per_dim(nats, num_dims)
            else:  # continuous density of the data in its own units (images: rescaled from [−1, 1])
                nats = nats + (num_dims * jnp.log((hi - lo) / 2.0) if scale_data else 0.0)
                bpd = losses.bits_per_dim(nats, num_dims)
            out.update(nll=jnp.mean(nats), bits_per_dim=jnp.mean(bpd))
        return out

    return Family(name="diffusion", init=init, train_step=train_step, sample=sample, evaluate=evaluate)
