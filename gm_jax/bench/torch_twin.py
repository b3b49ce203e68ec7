"""The PyTorch twin of the diffusion training step, for ``gm-jax bench train --torch`` (optional: PyTorch is
an extra, ``pip install torch==2.13.0``; nothing here imports torch at module import).

The twin mirrors :class:`gm_jax.nn.unet.UNet` layer by layer from the same :func:`~gm_jax.nn.unet.unet_config`
(Ho et al. 2020, App. B: residual blocks GN → swish → conv with the time embedding added, self-attention
at the chosen resolutions and in the middle, nearest upsampling + conv, class embedding with a null row) in
NCHW layout, with flax's conventions where they change the arithmetic or the parameter count: GroupNorm
ε = 1e-6 with gcd(channels, 32) groups, stride-2 'SAME' convolutions padded (0, 1), 1×1 projections as dense
layers over channels. :func:`torch_unet` asserts that its parameter count equals the JAX network's.

The step is the family's ε-prediction objective (Ho et al. 2020, Alg. 1, eq. 14): label dropout for
classifier-free guidance (Ho & Salimans 2022), t ~ U{0..T−1}, x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,
loss = mean ‖ε − ε_θ(x_t, t, y)‖², then global-norm gradient clipping, Adam (Kingma & Ba 2015) and the
parameter EMA when the config has them — the same work per step as ``family.train_step``.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
import types
from typing import Any

import numpy as np

from gm_jax.core.errors import require
from gm_jax.nn.attention import group_count


def torch_available() -> bool:
    """Whether ``import torch`` works."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _blocks() -> Any:
    """torch and the twin's building blocks: GroupNorm as flax's, the sinusoidal time embedding, the residual
    block, self-attention and the stride-2 'SAME' convolution (Ho et al. 2020, App. B)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def gn(c: int) -> nn.GroupNorm:
        return nn.GroupNorm(group_count(c), c, eps=1e-6)

    def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        return F.pad(torch.cat([torch.sin(args), torch.cos(args)], dim=1), (0, dim - 2 * half))

    class ResBlock(nn.Module):
        def __init__(self, cin: int, cout: int, temb: int, dropout: float):
            super().__init__()
            self.norm1, self.conv1 = gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.temb_proj = nn.Linear(temb, cout)
            self.norm2, self.conv2 = gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.drop = nn.Dropout(dropout)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
            h = self.conv2(self.drop(F.silu(self.norm2(h))))
            return (self.skip(x) if self.skip is not None else x) + h

    class Attn(nn.Module):
        def __init__(self, c: int, heads: int):
            super().__init__()
            self.heads, self.norm = heads, gn(c)
            self.q, self.k, self.v, self.proj_out = (nn.Linear(c, c) for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, c, hh, ww = x.shape
            y = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
            q, k, v = (f(y).reshape(b, hh * ww, self.heads, c // self.heads).transpose(1, 2)
                       for f in (self.q, self.k, self.v))
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // self.heads), dim=-1)
            out = (att @ v).transpose(1, 2).reshape(b, hh * ww, c)
            return x + self.proj_out(out).transpose(1, 2).reshape(b, c, hh, ww)

    class DownConv(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # flax 'SAME' at stride 2, k = 3: pad (0, 1)
            return super().forward(F.pad(x, (0, 1, 0, 1)))

    return types.SimpleNamespace(torch=torch, F=F, nn=nn, gn=gn, sinusoidal=sinusoidal, ResBlock=ResBlock,
                                 Attn=Attn, DownConv=DownConv)


def _down_path(ch: int, ch_mult: tuple, num_res_blocks: int, attn_resolutions: tuple, res: int, temb: int,
               dropout: float, num_heads: int) -> tuple[Any, list[list[str]], list[int], int, int]:
    """The encoder: per level ``num_res_blocks`` residual blocks (+ attention at ``attn_resolutions``), then a
    downsampling conv except at the last level. Returns (modules, their flax names, skip channels, channels,
    resolution)."""
    b = _blocks()
    down, names, chans, c = b.nn.ModuleList(), [], [ch], ch
    for level, mult in enumerate(ch_mult):
        for i in range(num_res_blocks):
            blocks, block_names = [b.ResBlock(c, ch * mult, temb, dropout)], [f"down{level}_res{i}"]
            c = ch * mult
            if res in attn_resolutions:
                blocks.append(b.Attn(c, num_heads))
                block_names.append(f"down{level}_attn{i}")
            down.append(b.nn.ModuleList(blocks))
            names.append(block_names)
            chans.append(c)
        if level != len(ch_mult) - 1:
            down.append(b.nn.ModuleList([b.DownConv(c, c, 3, stride=2)]))
            names.append([f"down{level}_downsample"])
            res //= 2
            chans.append(c)
    return down, names, chans, c, res


def _up_path(ch: int, ch_mult: tuple, num_res_blocks: int, attn_resolutions: tuple, res: int, temb: int,
             dropout: float, num_heads: int, chans: list[int], c: int) -> tuple[Any, list[list[str]], int]:
    """The decoder: per level ``num_res_blocks + 1`` residual blocks on [h; skip] (+ attention), then nearest
    upsampling + conv except at level 0. Returns (modules, their flax names, output channels)."""
    b = _blocks()
    up, names = b.nn.ModuleList(), []
    for level in reversed(range(len(ch_mult))):
        for i in range(num_res_blocks + 1):
            skip = chans.pop()
            blocks, block_names = [b.ResBlock(c + skip, ch * ch_mult[level], temb, dropout)], [f"up{level}_res{i}"]
            c = ch * ch_mult[level]
            if res in attn_resolutions:
                blocks.append(b.Attn(c, num_heads))
                block_names.append(f"up{level}_attn{i}")
            up.append(b.nn.ModuleList(blocks))
            names.append(block_names)
        if level != 0:
            up.append(b.nn.ModuleList([b.nn.Conv2d(c, c, 3, padding=1)]))
            names.append([f"up{level}_upsample"])
            res *= 2
    return up, names, c


@functools.lru_cache(maxsize=1)
def _unet_class() -> Any:
    """The twin of :class:`gm_jax.nn.unet.UNet` (NCHW), assembled from :func:`_down_path` and :func:`_up_path`."""
    b = _blocks()
    torch, F, nn = b.torch, b.F, b.nn

    class TorchUNet(nn.Module):
        def __init__(self, in_ch: int, res: int, ch: int, ch_mult: tuple, num_res_blocks: int,
                     attn_resolutions: tuple, dropout: float, num_classes: int, num_heads: int = 1,
                     out_channels: int | None = None):
            super().__init__()
            self.ch, self.num_classes, temb = ch, num_classes, 4 * ch
            self.temb0, self.temb1 = nn.Linear(ch, temb), nn.Linear(temb, temb)
            self.class_embed = nn.Embedding(num_classes + 1, temb) if num_classes > 0 else None
            self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
            shape = (ch, ch_mult, num_res_blocks, attn_resolutions)
            self.down, down_names, chans, c, res = _down_path(*shape, res, temb, dropout, num_heads)
            self.mid = nn.ModuleList([b.ResBlock(c, c, temb, dropout), b.Attn(c, num_heads),
                                      b.ResBlock(c, c, temb, dropout)])
            self.up, up_names, c = _up_path(*shape, res, temb, dropout, num_heads, chans, c)
            self.flax_names: dict[str, list[list[str]]] = {"down": down_names, "up": up_names}
            self.norm_out = b.gn(c)
            self.conv_out = nn.Conv2d(c, out_channels or in_ch, 3, padding=1)

        def _run(self, blocks: Any, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
            for blk in blocks:
                h = blk(h, temb) if isinstance(blk, b.ResBlock) else blk(h)
            return h

        def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
            temb = self.temb1(F.silu(self.temb0(b.sinusoidal(t, self.ch))))
            if self.class_embed is not None:
                if label is None:
                    label = torch.full((x.shape[0],), self.num_classes, dtype=torch.long)
                temb = temb + self.class_embed(label)
            hs = [self.conv_in(x)]
            h = hs[-1]
            for blocks in self.down:
                h = self._run(blocks, h, temb)
                hs.append(h)
            h = self._run(self.mid, h, temb)
            for blocks in self.up:
                if isinstance(blocks[0], b.ResBlock):
                    h = self._run(blocks, torch.cat([h, hs.pop()], dim=1), temb)
                else:  # upsample: nearest ×2, then conv
                    h = blocks[0](F.interpolate(h, scale_factor=2, mode="nearest"))
            return self.conv_out(F.silu(self.norm_out(h)))

    return TorchUNet


def _modules() -> Any:
    """(torch, the twin's U-Net class); imports torch on first use."""
    return _blocks().torch, _unet_class()


def load_flax_params(net: Any, params: Any) -> None:
    """Copy the parameters of the JAX U-Net (``params`` = its ``variables['params']``) into the twin, so
    that both compute the same function (NHWC kernels [kh, kw, in, out] → NCHW [out, in, kh, kw]; dense
    kernels [in, out] → [out, in]; GroupNorm scale → weight)."""
    import torch
    from torch import nn

    def put(module: Any, tree: Any) -> None:
        if isinstance(module, nn.GroupNorm):
            pairs = {"weight": tree["scale"], "bias": tree["bias"]}
        elif isinstance(module, nn.Embedding):
            pairs = {"weight": tree["embedding"]}
        elif isinstance(module, nn.Linear):
            pairs = {"weight": np.asarray(tree["kernel"]).T, "bias": tree["bias"]}
        elif isinstance(module, nn.Conv2d):
            k = np.asarray(tree["kernel"])
            k = k.T[:, :, None, None] if k.ndim == 2 else np.transpose(k, (3, 2, 0, 1))
            pairs = {"weight": k, "bias": tree["bias"]}
        else:  # a block: its children carry flax's names
            for child_name, child in module.named_children():
                if child_name in tree:
                    put(child, tree[child_name])
            return
        with torch.no_grad():
            for attr, value in pairs.items():
                getattr(module, attr).copy_(torch.tensor(np.asarray(value, np.float32)))

    put(net.temb0, params["temb_dense0"])
    put(net.temb1, params["temb_dense1"])
    if net.class_embed is not None:
        put(net.class_embed, params["class_embed"])
    for mod, name in ((net.conv_in, "conv_in"), (net.norm_out, "norm_out"), (net.conv_out, "conv_out")):
        put(mod, params[name])
    for part in ("down", "up"):
        for blocks, names in zip(getattr(net, part), net.flax_names[part], strict=True):
            for blk, name in zip(blocks, names, strict=True):
                put(blk, params[name])
    for blk, name in zip(net.mid, ("mid_res0", "mid_attn", "mid_res1"), strict=True):
        put(blk, params[name])


def twin_forward_diff(unet_kwargs: dict, in_shape: tuple[int, int, int], num: int = 3, seed: int = 0) -> float:
    """max |JAX U-Net − twin| over one forward pass on random inputs, with the JAX parameters (randomly
    initialized, then perturbed so that the zero-initialized output layers are not zero) copied into the twin
    by :func:`load_flax_params`: ~1e-6 when the twin computes the same function."""
    import jax
    import torch

    from gm_jax.nn.unet import UNet

    net = UNet(**{**unet_kwargs, "dropout": 0.0})
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num,) + tuple(in_shape)).astype(np.float32)
    t = rng.uniform(0, 999, num).astype(np.float32)
    ncls = int(unet_kwargs.get("num_classes", 0))
    lab = (np.arange(num) % (ncls + 1)).astype(np.int32) if ncls else None
    params = net.init(jax.random.key(seed), x, t, lab)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys,
                                                                                                 strict=True)])
    twin = torch_unet({**unet_kwargs, "dropout": 0.0}, in_shape)
    load_flax_params(twin, params)
    twin.eval()
    with torch.no_grad():
        out_t = twin(torch.tensor(x.transpose(0, 3, 1, 2)), torch.tensor(t),
                     None if lab is None else torch.tensor(lab, dtype=torch.long)).numpy().transpose(0, 2, 3, 1)
    out_j = np.asarray(net.apply({"params": params}, x, t, lab))
    return float(np.max(np.abs(out_j - out_t)))


def count_params_torch(module: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def torch_unet(unet_kwargs: dict, in_shape: tuple[int, int, int], jax_params: int | None = None) -> Any:
    """The twin of ``UNet(**unet_kwargs)`` for images ``in_shape`` = (H, W, C); with ``jax_params`` it
    checks that both networks have the same number of parameters."""
    _, TorchUNet = _modules()
    kw = {k: v for k, v in unet_kwargs.items() if k != "dtype"}
    net = TorchUNet(in_shape[2], in_shape[0], kw["ch"], tuple(kw["ch_mult"]), kw["num_res_blocks"],
                    tuple(kw["attn_resolutions"]), kw.get("dropout", 0.0), kw.get("num_classes", 0),
                    kw.get("num_heads", 1), kw.get("out_channels"))
    if jax_params is not None:
        n = count_params_torch(net)
        require(n == jax_params, f"the PyTorch twin has {n} parameters but the JAX U-Net {jax_params}; "
                "the twin no longer mirrors gm_jax.nn.unet.UNet")
    return net


def default_threads() -> int:
    """Threads for torch matching this JAX process: 1 when XLA:CPU runs single-threaded
    (``--xla_cpu_multi_thread_eigen=false``), else every core."""
    flags = os.environ.get("XLA_FLAGS", "")
    return 1 if "xla_cpu_multi_thread_eigen=false" in flags else (os.cpu_count() or 1)


def _twin_train_step(torch: Any, net: Any, config: Any, batch_x: np.ndarray, batch_label: np.ndarray | None,
                     ncls: int) -> Any:
    """``step() -> loss`` of the twin: label dropout, t ~ U{0..T−1}, x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, ε-MSE
    (Ho et al. 2020, Alg. 1), gradient clipping, Adam and the parameter EMA as in ``config.optim``."""
    from gm_jax.diffusion.schedules import discrete_schedule

    m, o = config.model, config.optim
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=float(o.learning_rate), betas=(float(o.get("b1", 0.9)),
                                                                     float(o.get("b2", 0.999))))
    ema = [p.detach().clone() for p in params]
    decay, clip = float(o.get("ema_decay", 0.0)), float(o.get("grad_clip", 0.0))
    process = discrete_schedule(m.beta_schedule, int(m.num_timesteps))
    alpha, sigma = (torch.tensor(np.asarray(v), dtype=torch.float32)
                    for v in process.alpha_sigma(np.arange(process.num_steps)))
    x0 = torch.tensor(np.transpose(np.asarray(batch_x, np.float32), (0, 3, 1, 2))).contiguous()
    label = None if batch_label is None else torch.tensor(np.asarray(batch_label), dtype=torch.long)
    b = x0.shape[0]

    def step() -> float:
        lab = label
        if lab is not None:
            lab = torch.where(torch.rand(b) < float(m.label_dropout), torch.full_like(lab, ncls), lab)
        t = torch.randint(0, process.num_steps, (b,))
        noise = torch.randn_like(x0)
        x_t = alpha[t][:, None, None, None] * x0 + sigma[t][:, None, None, None] * noise
        loss = torch.mean((net(x_t, t.float(), lab) - noise) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        if decay > 0:
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)
        return float(loss.detach())

    return step


def _time_steps(step: Any, repeats: int, min_total_s: float) -> tuple[float, list[float], list[float]]:
    """(loss of a warm-up call, wall times, process CPU times) of at least ``repeats`` calls of ``step``,
    more (up to 200) until ``min_total_s`` seconds were timed."""
    first = step()  # warm-up (allocations, oneDNN primitive selection)
    times, cpu = [], []
    while len(times) < repeats or (sum(times) < min_total_s and len(times) < 200):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, times, cpu


def bench_torch_diffusion(config: Any, jax_params: int, batch_x: np.ndarray, batch_label: np.ndarray | None,
                          num_classes: int, repeats: int = 3, min_total_s: float = 0.5, threads: int = 0
                          ) -> dict[str, Any]:
    """Images/s of the twin's training step (see the module docstring) on ``batch_x`` [B, H, W, C] in
    [−1, 1] (NHWC, transposed once to NCHW outside the timed region) for the diffusion ``config``;
    ``num_classes`` as the JAX family sees them (0: unconditional)."""
    torch, _ = _modules()
    from gm_jax.nn.unet import unet_config

    m = config.model
    require(m.network == "unet" and m.process == "discrete" and m.parametrization == "eps",
            "the PyTorch twin covers the discrete-time ε-prediction U-Net DDPM only")
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ncls = 0 if batch_label is None else int(num_classes)
    kwargs = unet_config(m.unet, num_classes=ncls)
    if m.dropout >= 0:
        kwargs["dropout"] = float(m.dropout)
    net = torch_unet(kwargs, tuple(batch_x.shape[1:]), jax_params)
    net.train()
    first, times, cpu = _time_steps(_twin_train_step(torch, net, config, batch_x, batch_label, ncls), repeats,
                                    min_total_s)
    med, cmed = statistics.median(times), statistics.median(cpu)
    b = int(batch_x.shape[0])
    return {"config": "pytorch", "status": "ok", "family": "diffusion (PyTorch twin)", "batch": b,
            "steps_per_call": 1, "devices": 1, "dtype": "float32", "torch_version": torch.__version__,
            "torch_threads": threads, "num_params": count_params_torch(net), "num_params_jax": jax_params,
            "call_s": med, "step_s": med, "images_per_s": b / med, "call_cpu_s": cmed,
            "images_per_cpu_s": b / cmed, "repeats": len(times), "first_loss": first}
