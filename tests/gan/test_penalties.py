"""Gradient penalty, R1 and spectral normalisation against closed forms and numpy."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.gan.penalties import (
    SpectralNorm,
    gradient_penalty,
    init_spectral_vector,
    interpolate,
    r1_penalty,
    spectral_normalize,
)


def linear_critic(w):
    return lambda x: jnp.sum(x.reshape(x.shape[0], -1) * w.reshape(-1), axis=-1)


def test_gradient_penalty_zero_for_unit_norm_linear_critic_positive_otherwise():
    key = jax.random.key(0)
    real = jax.random.normal(jax.random.key(1), (16, 4, 4, 2))
    fake = jax.random.normal(jax.random.key(2), (16, 4, 4, 2))
    w = jax.random.normal(jax.random.key(3), (4, 4, 2))
    unit = w / jnp.linalg.norm(w)
    penalty = jax.jit(lambda v: gradient_penalty(linear_critic(v), real, fake, key))
    assert float(penalty(unit)) < 1e-8
    # ||grad|| = 2 everywhere: the penalty is (2 - 1)^2 = 1 exactly.
    np.testing.assert_allclose(penalty(2 * unit), 1.0, rtol=1e-5)


def test_gradient_penalty_of_quadratic_critic_matches_numpy():
    """f(x) = ||x||^2 has gradient 2 x, so the penalty is mean (2 ||x_hat|| - 1)^2 at the interpolates."""
    key = jax.random.key(4)
    real, fake = jax.random.normal(jax.random.key(5), (32, 3)), jax.random.normal(jax.random.key(6), (32, 3))
    x_hat = np.asarray(interpolate(key, real, fake))
    expected = np.mean((2 * np.linalg.norm(x_hat, axis=1) - 1) ** 2)
    got = gradient_penalty(lambda x: jnp.sum(x ** 2, axis=-1), real, fake, key)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_interpolates_lie_on_segments_and_follow_the_key():
    real, fake = jax.random.normal(jax.random.key(7), (64, 5)), jax.random.normal(jax.random.key(8), (64, 5))
    x_hat = np.asarray(interpolate(jax.random.key(9), real, fake))
    r, f = np.asarray(real), np.asarray(fake)
    eps = np.sum((x_hat - f) * (r - f), axis=1) / np.sum((r - f) ** 2, axis=1)
    np.testing.assert_allclose(x_hat, eps[:, None] * r + (1 - eps[:, None]) * f, atol=1e-5)
    assert eps.min() >= 0 and eps.max() <= 1 and eps.std() > 0.1
    np.testing.assert_array_equal(x_hat, interpolate(jax.random.key(9), real, fake))
    assert not np.allclose(x_hat, interpolate(jax.random.key(10), real, fake))


def test_r1_penalty_closed_forms():
    x = jax.random.normal(jax.random.key(11), (20, 6))
    w = jnp.arange(6.0) / 3.0
    np.testing.assert_allclose(r1_penalty(linear_critic(w), x), 0.5 * float(jnp.sum(w ** 2)), rtol=1e-5)
    # f(x) = a/2 ||x||^2: grad a x, R1 = a^2 / 2 mean ||x||^2.
    a = 1.7
    expected = 0.5 * a ** 2 * np.mean(np.sum(np.asarray(x) ** 2, axis=1))
    np.testing.assert_allclose(r1_penalty(lambda v: 0.5 * a * jnp.sum(v ** 2, axis=-1), x), expected, rtol=1e-5)


def test_spectral_normalisation_gives_unit_top_singular_value():
    for shape in [(7, 5), (3, 3, 4, 6)]:
        weight = jax.random.normal(jax.random.key(12), shape)
        u = init_spectral_vector(jax.random.key(13), weight)
        w_sn, _, sigma = spectral_normalize(weight, u, num_iters=2000)
        matrix = np.asarray(weight).reshape(-1, shape[-1])
        np.testing.assert_allclose(sigma, np.linalg.svd(matrix, compute_uv=False)[0], rtol=1e-4)
        top = np.linalg.svd(np.asarray(w_sn).reshape(-1, shape[-1]), compute_uv=False)[0]
        np.testing.assert_allclose(top, 1.0, rtol=1e-4)


def test_spectral_vector_carried_across_calls_converges():
    """One power iteration per call with the persistent u (Miyato et al. 2018, Alg. 1) converges too."""
    weight = jax.random.normal(jax.random.key(14), (6, 6))
    u = init_spectral_vector(jax.random.key(15), weight)
    step = jax.jit(lambda w, u_: spectral_normalize(w, u_, 1))
    sigmas = []
    for _ in range(60):
        _, u, sigma = step(weight, u)
        sigmas.append(float(sigma))
    top = np.linalg.svd(np.asarray(weight), compute_uv=False)[0]
    assert sigmas[0] <= top + 1e-4
    np.testing.assert_allclose(sigmas[-1], top, rtol=1e-3)


def _top_singular_value(kernel):
    kernel = np.asarray(kernel)
    return np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]


def test_spectral_norm_wrapper_normalises_dense_and_conv_kernels():
    """The wrapped layer computes with W / sigma(W): after power iterations carried in the "spectral"
    collection, the effective kernel (recovered from the layer's outputs) has top singular value 1 (numpy SVD),
    the stored sigma is the raw kernel's top singular value, and u only moves with update_stats=True."""
    cases = [(nn.Dense(5, use_bias=False), jnp.eye(7)),
             (nn.Conv(6, (3, 3), padding="VALID", use_bias=False),
              jnp.eye(3 * 3 * 4).reshape(36, 3, 3, 4))]  # one-hot inputs read out the kernel's rows
    for layer, x in cases:
        model = SpectralNorm(layer, num_iters=1)
        variables = jax.jit(model.init)(jax.random.key(16), x)
        assert set(variables["spectral"]) == {"kernel_u", "kernel_sigma"}
        step = jax.jit(functools.partial(lambda v, update, m, inp: m.apply(v, inp, update_stats=update,
                                                                            mutable=["spectral"]),
                                         m=model, inp=x), static_argnums=1)
        same, unchanged = step(variables, False)
        np.testing.assert_array_equal(unchanged["spectral"]["kernel_u"], variables["spectral"]["kernel_u"])
        for _ in range(150):  # one power iteration per call, u carried across calls (Alg. 1)
            out, new = step(variables, True)
            variables = {**variables, **new}
        raw = variables["params"]["layer"]["kernel"]
        np.testing.assert_allclose(variables["spectral"]["kernel_sigma"], _top_singular_value(raw), rtol=1e-4)
        effective = np.asarray(out).reshape(x.shape[0], -1)  # rows of the kernel matrix W_SN
        np.testing.assert_allclose(_top_singular_value(effective), 1.0, rtol=1e-4)
        np.testing.assert_allclose(effective, np.asarray(raw).reshape(-1, raw.shape[-1])
                                   / _top_singular_value(raw), rtol=1e-3, atol=1e-6)
        assert not np.allclose(same, out)  # the first call used the initial, unconverged u


def test_spectral_norm_wrapper_gradient_reaches_the_raw_kernel():
    """d/dW of sum(x W / sigma(W)) is non-zero, and ||W_SN||_2 = 1 is invariant to rescaling W (so the
    output is unchanged when the raw kernel is doubled)."""
    model = SpectralNorm(nn.Dense(3), num_iters=50)
    x = jax.random.normal(jax.random.key(17), (4, 6))
    variables = jax.jit(model.init)(jax.random.key(18), x)
    _, new = jax.jit(lambda v: model.apply(v, x, update_stats=True, mutable=["spectral"]))(variables)
    variables = {**variables, **new}
    apply = jax.jit(lambda p: model.apply({**variables, "params": p}, x))
    grads = jax.grad(lambda p: jnp.sum(apply(p) ** 2))(variables["params"])
    assert float(jnp.max(jnp.abs(grads["layer"]["kernel"]))) > 0
    doubled = jax.tree.map(lambda a: a, variables["params"])
    doubled["layer"] = {**doubled["layer"], "kernel": 2 * doubled["layer"]["kernel"]}
    bias_free = jnp.zeros_like(variables["params"]["layer"]["bias"])
    for p in (variables["params"], doubled):
        p["layer"] = {**p["layer"], "bias": bias_free}
    np.testing.assert_allclose(apply(doubled), apply(variables["params"]), rtol=1e-4, atol=1e-6)
