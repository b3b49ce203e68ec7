"""Convolution gradients inside loops on XLA:CPU (issue 19): the U-Net's vector–Jacobian product and training
step, alone and inside ``lax.fori_loop`` / ``lax.scan``, for each gradient form of
:func:`gm_jax.nn.im2col.conv2d` — ``autodiff`` (JAX's own: the input gradient is a convolution with kernel
layout ``01oi``), ``xla`` (input gradient as a forward convolution, XLA's weight gradient) and ``im2col``
(input gradient as a forward convolution, weight gradient as one matmul). All in one process, so the ratios
compare like with like; times are the best of ``--repeats``.

    python experiments/conv_gradient_loops.py [--unet small] [--batch 64] [--k 4] [--repeats 3] \\
        [--out runs/conv_gradient_loops.json]

Rows: ``vjp`` (one VJP of the denoiser, as DPS/ΠGDM take per step), ``vjp_in_loop`` (the same inside a
``fori_loop`` of ``k`` iterations, per iteration), ``train_step`` (grad + Adam, one call) and
``train_step_scan`` (``k`` steps fused in one ``lax.scan``, per step).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

MODES = ("autodiff", "xla", "im2col")


def best_time(fn: Callable, *args: Any, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def programs(net: Any, x: Any, t: Any, y: Any, k: int) -> dict[str, Callable]:
    """The four timed programs and the number of iterations each call runs."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(1e-3)

    def vjp(p, u):
        out, pull = jax.vjp(lambda a: net.apply(p, a, t, y), u)
        return pull(out)[0]

    def step(carry, _):
        p, s = carry
        g = jax.grad(lambda q: jnp.mean((net.apply(q, x, t, y) - x) ** 2))(p)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), None

    return {
        "vjp": (jax.jit(vjp), 1),
        "vjp_in_loop": (jax.jit(lambda p, u: jax.lax.fori_loop(0, k, lambda i, v: 0.1 * vjp(p, v), u)), k),
        "train_step": (jax.jit(lambda p, s: step((p, s), None)[0]), 1),
        "train_step_scan": (jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=k)[0]), k),
        "init_opt": opt.init,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--unet", default="small")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/conv_gradient_loops.json")
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    import gm_jax.nn.im2col as im2col
    from gm_jax.nn.unet import UNet, unet_config

    chosen = {"mode": "autodiff"}
    conv2d = im2col.conv2d
    im2col.conv2d = lambda x, k, pad, weight_grad="auto": conv2d(x, k, pad, chosen["mode"])  # every U-Net conv
    net = UNet(**unet_config(args.unet, num_classes=10))
    b = args.batch
    x = jax.random.normal(jax.random.key(0), (b, 28, 28, 1))
    t, y = jnp.full((b,), 0.5), jnp.zeros((b,), jnp.int32)
    params = net.init(jax.random.key(1), x, t, y)
    seconds: dict[str, dict[str, float]] = {}
    for mode in MODES:
        chosen["mode"] = mode
        progs = programs(net, x, t, y, args.k)
        state = progs.pop("init_opt")(params)
        seconds[mode] = {}
        for name, (fn, iters) in progs.items():
            second = state if name.startswith("train") else x
            seconds[mode][name] = best_time(fn, params, second, repeats=args.repeats) / iters
        print(mode, {k: round(v, 4) for k, v in seconds[mode].items()}, flush=True)
    ratios = {name: {mode: seconds["autodiff"][name] / seconds[mode][name] for mode in MODES}
              for name in seconds["autodiff"]}
    payload = {"backend": jax.default_backend(), "unet": args.unet, "batch": b, "k": args.k,
               "seconds_per_iteration": seconds, "speedup_over_autodiff": ratios,
               "loop_over_alone": {mode: {"vjp": seconds[mode]["vjp_in_loop"] / seconds[mode]["vjp"],
                                          "train": seconds[mode]["train_step_scan"] / seconds[mode]["train_step"]}
                                   for mode in MODES},
               "load_average": os.getloadavg()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(payload, f, indent=2)
    print(json.dumps({"speedup_over_autodiff": ratios, "loop_over_alone": payload["loop_over_alone"]}, indent=1))


if __name__ == "__main__":
    main()
