"""Every bijector: inverse(forward(x)) = x and the log-det equals log|det| of jax.jacobian."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core import ConfigError
from gm_jax.flows import bijectors as bj
from gm_jax.flows.model import image_flow, realnvp_vector


def _perturb(params, key, scale=0.3):
    """Random non-trivial parameters (couplings start as the identity)."""
    leaves, tree = jax.tree.flatten(params)
    rs = np.random.RandomState(int(jax.random.randint(key, (), 0, 2**30)))  # numpy draws: no JAX compile per shape
    return jax.tree.unflatten(tree, [p + jnp.asarray(scale * rs.standard_normal(p.shape), p.dtype) for p in leaves])


def _init(module, key, x, method="forward_and_log_det"):
    """``module.init`` jitted (eager linen compiles op by op)."""
    return jax.jit(partial(module.init, method=method))(key, x)


def _check(module, x, key, atol=1e-4):
    params = _init(module, key, x)
    params = _perturb(params, jax.random.fold_in(key, 1))
    fwd = lambda v: module.apply(params, v, method="forward_and_log_det")
    inv = lambda v: module.apply(params, v, method="inverse_and_log_det")

    @jax.jit
    def run(x):
        y, log_det = fwd(x)
        x_back, inv_log_det = inv(y)
        # Reference: the full Jacobian of one example (vmapped over the batch).
        jac = jax.vmap(jax.jacfwd(lambda v: fwd(v[None])[0][0]))(x)
        return y, log_det, x_back, inv_log_det, jac.reshape(x.shape[0], y[0].size, x[0].size)

    y, log_det, x_back, inv_log_det, jac = run(x)
    np.testing.assert_allclose(x_back, x, atol=atol)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=atol, rtol=1e-4)
    _, ref = np.linalg.slogdet(np.asarray(jac, np.float64))
    np.testing.assert_allclose(log_det, ref, atol=1e-3, rtol=1e-4)
    assert float(jnp.max(jnp.abs(log_det))) > 1e-3  # the test is not of a trivial (volume-preserving) map


IMAGE = (2, 4, 4, 2)


def test_affine_coupling_vector_and_mask_halves():
    x = jax.random.normal(jax.random.key(0), (3, 5))
    _check(bj.AffineCoupling(bj.MLPConditioner(16), "checkerboard", 1), x, jax.random.key(2))
    _check(bj.AffineCoupling(bj.MLPConditioner(16), "channel", 0), x, jax.random.key(3))
    m = bj.coupling_mask((4, 4, 3), "checkerboard", 0)
    assert float(m.sum()) == 4 * 4 * 3 / 2 and float(m[0, 0, 0]) == 0 and float(m[0, 1, 2]) == 1


def test_actnorm_data_dependent_init():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 4, 4, 3))
    layer = bj.ActNorm()
    params = _init(layer, jax.random.key(1), x)
    y, _ = layer.apply(params, x, method="forward_and_log_det")
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-4)
    _check(layer, x[:2], jax.random.key(3))


def test_invertible_conv_lu():
    x = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
    layer = bj.InvertibleConv1x1(seed=3)
    _check(layer, x, jax.random.key(4))
    params = _perturb(_init(layer, jax.random.key(4), x), jax.random.key(5))
    w = layer.apply(params, 4, method="weight")
    log_s = params["params"]["log_s"]
    np.testing.assert_allclose(np.linalg.slogdet(np.asarray(w))[1], float(jnp.sum(log_s)), atol=1e-5)


def test_squeeze_roundtrip_and_odd_size_error():
    x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
    y, log_det = bj.Squeeze().apply({}, x, method="forward_and_log_det")
    assert y.shape == (2, 2, 3, 12)
    np.testing.assert_allclose(log_det, 0.0)
    # Each output channel block is one sub-pixel position of the 2x2 patch.
    np.testing.assert_allclose(y[:, :, :, 3:6], x[:, 0::2, 1::2, :])
    np.testing.assert_allclose(bj.unsqueeze(y), x)
    with pytest.raises(ConfigError, match="even height and width"):
        bj.squeeze(jnp.zeros((1, 5, 4, 1)))


def test_chain_factor_out_and_image_flows():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
    # Two-scale RealNVP: checkerboard and channel image couplings, squeeze, factor-out, unsqueeze, chain.
    _check(image_flow((4, 4, 1), "realnvp", num_scales=2, steps_per_scale=1, hidden=4).bijector, x,
           jax.random.key(6))
    # Two-scale Glow: squeeze, (ActNorm, LU 1x1 conv, coupling), factor-out, unsqueeze, composed.
    _check(image_flow((4, 4, 1), "glow", num_scales=2, steps_per_scale=1, hidden=4).bijector, x,
           jax.random.key(7))
    factor = bj.FactorOut(bj.Chain((bj.Squeeze(), bj.ActNorm(), bj.Unsqueeze())))
    y, _ = jax.jit(partial(factor.apply, method="forward_and_log_det"))(
        _init(factor, jax.random.key(8), jax.random.normal(jax.random.key(9), (8, 4, 4, 2))), x.repeat(2, -1))
    np.testing.assert_allclose(y[..., 0], x[..., 0])  # the factored-out half goes straight to the latent


def test_image_flow_bad_sizes():
    with pytest.raises(ConfigError, match="divisible by 4"):
        image_flow((6, 6, 1), "glow", num_scales=2)
    with pytest.raises(ConfigError, match="unknown model.kind"):
        image_flow((4, 4, 1), "maf")
    with pytest.raises(ConfigError, match="channel"):
        bj.coupling_mask((4, 4, 1), "channel", 0)


def test_realnvp_2d_density_integrates_to_one():
    flow = realnvp_vector(2, num_layers=4, hidden=16)
    data = jax.random.normal(jax.random.key(0), (256, 2)) * jnp.array([1.0, 0.5]) + 0.3
    params = _perturb(jax.jit(flow.init)(jax.random.key(1), data), jax.random.key(2), scale=0.2)
    grid = jnp.linspace(-8.0, 8.0, 401)
    xx, yy = jnp.meshgrid(grid, grid)
    points = jnp.stack([xx.ravel(), yy.ravel()], axis=1)
    density = jnp.exp(jax.jit(lambda p: flow.apply(params, p, method="log_prob"))(points))
    mass = float(jnp.sum(density) * (grid[1] - grid[0]) ** 2)
    assert abs(mass - 1.0) < 0.02, mass
