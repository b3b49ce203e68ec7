"""Linear measurement operators y = A x + σ_y ε for inverse problems, as pure functions of arrays.

An operator is a :class:`LinearOperator`: its arrays (``params``, a pytree, so a new mask does not recompile)
and a static :class:`OperatorImpl` of module-level pure functions ``(params, array) -> array``:

* ``A(x)``, ``AT(y)`` (the exact adjoint, ⟨A x, y⟩ = ⟨x, Aᵀ y⟩), ``pinv(y)`` (the Moore–Penrose
  pseudo-inverse A⁺, Penrose 1955), and
* an SVD A = U Σ Vᵀ without dense d × d matrices, in the convention of DDRM (Kawar et al. 2022, Sec. 3 and
  their H_funcs): ``Vt``/``V`` map x to its spectral coordinates and back (orthogonal, x-shaped),
  ``Ut(y)`` gives Uᵀ y zero-padded to x's shape, ``U`` crops back, and ``singular_values`` is x-shaped
  (zero on the null space), so that A x = U(s ⊙ Vᵀ x), Aᵀ y = V(s ⊙ Uᵀ y), A⁺ y = V(s⁺ ⊙ Uᵀ y).

Two structures cover the operators here:

* diagonal (masking, :func:`mask_operator`): A = Aᵀ = A⁺ = diag(m), m ∈ {0, 1}; U = V = I, singular values m;
  y has x's shape (zeros where nothing is observed).
* separable (:func:`separable_operator`): A = M_1 ⊗ M_2 ⊗ … acting on the trailing axes of x, one small
  matrix M_i (m_i × n_i) per axis. The SVD of a Kronecker product is the Kronecker product of the per-axis
  SVDs M_i = U_i S_i V_iᵀ (Van Loan 2000, Sec. 3), computed once on the host in float64; the singular
  values are the outer product of the per-axis ones. Average pooling ×s along an axis has M Mᵀ = I/s, so
  every singular value is 1/√s and M⁺ = s Mᵀ; in 2-D A Aᵀ = I/s² and A⁺ = s² Aᵀ (nearest-neighbour
  upsampling). Colourization (channel mean) has a a ᵀ = 1/3, singular value 1/√3 and A⁺ = 3 Aᵀ
  (grey copied to every channel). A separable Gaussian blur is one symmetric n × n matrix per spatial axis
  (boundary 'reflect', 'circular' or 'zero'); its A⁺ drops singular values below ``rcond`` × the largest
  (exactly the Moore–Penrose inverse when none is dropped, as for pooling, colourization and masks).
  A dense matrix on flat vectors (:func:`matrix_operator`) is the one-axis case.

Images are [B, H, W, C]; ``x_shape``/``y_shape`` exclude the batch axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gm_jax.core.errors import check_choice, require

Params = dict[str, Any]


class OperatorImpl(NamedTuple):
    """The pure functions ``(params, array) -> array`` of one operator structure (see the module doc)."""

    A: Callable[[Params, jax.Array], jax.Array]
    AT: Callable[[Params, jax.Array], jax.Array]
    pinv: Callable[[Params, jax.Array], jax.Array]
    Vt: Callable[[Params, jax.Array], jax.Array]
    V: Callable[[Params, jax.Array], jax.Array]
    Ut: Callable[[Params, jax.Array], jax.Array]
    U: Callable[[Params, jax.Array], jax.Array]


class LinearOperator(struct.PyTreeNode):
    """A linear operator on batches [B, *x_shape] -> [B, *y_shape]; ``params`` are arrays (traced under jit),
    ``impl``/``name``/shapes are static."""

    params: Params
    impl: OperatorImpl = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)
    x_shape: tuple[int, ...] = struct.field(pytree_node=False)
    y_shape: tuple[int, ...] = struct.field(pytree_node=False)

    def A(self, x: jax.Array) -> jax.Array:
        return self.impl.A(self.params, x)

    def AT(self, y: jax.Array) -> jax.Array:
        return self.impl.AT(self.params, y)

    def pinv(self, y: jax.Array) -> jax.Array:
        return self.impl.pinv(self.params, y)

    def Vt(self, x: jax.Array) -> jax.Array:
        return self.impl.Vt(self.params, x)

    def V(self, z: jax.Array) -> jax.Array:
        return self.impl.V(self.params, z)

    def Ut(self, y: jax.Array) -> jax.Array:
        return self.impl.Ut(self.params, y)

    def U(self, z: jax.Array) -> jax.Array:
        return self.impl.U(self.params, z)

    @property
    def singular_values(self) -> jax.Array:
        """x-shaped singular values (zero on the null space of A)."""
        return self.params["singular"]

    @property
    def mask(self) -> jax.Array | None:
        """The 0/1 mask of a masking operator; ``None`` for the others."""
        return self.params.get("mask")

    def check_input(self, x: jax.Array, what: str = "x") -> None:
        """One-line ConfigError unless ``x`` is a batch of this operator's inputs (shapes are static)."""
        require(tuple(x.shape[1:]) == self.x_shape,
                f"{what} has shape {tuple(x.shape)}, but operator {self.name!r} takes [B, {self.x_shape}]; "
                "build the operator for this shape")

    def measure(self, x: jax.Array, key: jax.Array, sigma_y: float | jax.Array = 0.0) -> jax.Array:
        """y = A x + σ_y ε with ε ~ N(0, I) drawn from ``key``."""
        y = self.A(x)
        return y + sigma_y * jax.random.normal(key, y.shape, y.dtype)


# ----------------------------------------------------------------------------------------------------------
# Diagonal operators: masking
# ----------------------------------------------------------------------------------------------------------


def _mask_apply(p: Params, x: jax.Array) -> jax.Array:
    return p["mask"] * x


def _identity(p: Params, x: jax.Array) -> jax.Array:
    del p
    return x


MASK_IMPL = OperatorImpl(A=_mask_apply, AT=_mask_apply, pinv=_mask_apply, Vt=_identity, V=_identity,
                         Ut=_identity, U=_identity)


def mask_operator(mask: Any, x_shape: Sequence[int] | None = None, name: str = "mask") -> LinearOperator:
    """A = diag(m) for a binary mask m (1: observed). ``mask`` has shape ``x_shape`` or, for images
    (H, W, C), (H, W) (shared by the channels); without ``x_shape`` it is the mask's own shape."""
    m = np.asarray(mask)
    shape = tuple(m.shape) if x_shape is None else tuple(int(s) for s in x_shape)
    ok = m.shape == shape or (len(shape) == 3 and m.shape == shape[:2])
    require(ok, f"mask has shape {m.shape}, expected {shape}" + (f" or {shape[:2]}" if len(shape) == 3 else "")
            + "; pass a mask of the image's shape")
    require(bool(np.all((m == 0) | (m == 1))), "mask must be binary (0: unknown, 1: observed); threshold it first")
    if m.shape != shape:
        m = np.broadcast_to(m[..., None], shape)
    m = jnp.asarray(m, jnp.float32)
    return LinearOperator({"mask": m, "singular": m}, MASK_IMPL, name, shape, shape)


def _image_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in x_shape)
    require(len(shape) == 3 and min(shape) >= 1, f"image shape must be (H, W, C) with sizes >= 1, got {shape}")
    return shape  # type: ignore[return-value]


def box_mask(x_shape: Sequence[int], top: int, left: int, height: int, width: int) -> LinearOperator:
    """Box inpainting: everything observed except the ``height`` × ``width`` box at (``top``, ``left``)."""
    h, w, c = _image_shape(x_shape)
    require(0 <= top and 0 <= left and height >= 1 and width >= 1 and top + height <= h and left + width <= w,
            f"box ({top}, {left}, {height}, {width}) does not fit a {h}x{w} image; choose it inside the image")
    m = np.ones((h, w), np.float32)
    m[top:top + height, left:left + width] = 0
    return mask_operator(m, (h, w, c), "box")


def random_mask(x_shape: Sequence[int], keep: float, seed: int = 0) -> LinearOperator:
    """Random-pixel inpainting: each pixel (all its channels) observed with probability ``keep``, drawn
    once on the host from ``seed``."""
    h, w, c = _image_shape(x_shape)
    require(0.0 <= keep <= 1.0, f"keep must be in [0, 1], got {keep}")
    m = (np.random.default_rng(seed).random((h, w)) < keep).astype(np.float32)
    return mask_operator(m, (h, w, c), "random")


def half_mask(x_shape: Sequence[int], side: str = "right") -> LinearOperator:
    """Half-image completion: the ``side`` half ('left', 'right', 'top', 'bottom') is unknown."""
    h, w, c = _image_shape(x_shape)
    check_choice("half-mask side", side, ("left", "right", "top", "bottom"))
    m = np.ones((h, w), np.float32)
    region = {"left": np.s_[:, : w // 2], "right": np.s_[:, w // 2:], "top": np.s_[: h // 2], "bottom": np.s_[h // 2:]}
    m[region[side]] = 0
    return mask_operator(m, (h, w, c), f"half_{side}")


# ----------------------------------------------------------------------------------------------------------
# Separable operators: one small matrix per trailing axis
# ----------------------------------------------------------------------------------------------------------


def _along(x: jax.Array, mats: Sequence[jax.Array]) -> jax.Array:
    """Apply ``mats[i]`` (m_i × n_i) along trailing axis i of x [B, n_1, …, n_k]: (M_1 ⊗ … ⊗ M_k) x."""
    for i, m in enumerate(mats):
        axis = x.ndim - len(mats) + i
        x = jnp.moveaxis(jnp.tensordot(x, m, axes=([axis], [1])), -1, axis)
    return x


def _sep_A(p: Params, x: jax.Array) -> jax.Array:
    return _along(x, p["mats"])


def _sep_AT(p: Params, y: jax.Array) -> jax.Array:
    return _along(y, [m.T for m in p["mats"]])


def _sep_Vt(p: Params, x: jax.Array) -> jax.Array:
    return _along(x, p["vts"])


def _sep_V(p: Params, z: jax.Array) -> jax.Array:
    return _along(z, [v.T for v in p["vts"]])


def _sep_Ut(p: Params, y: jax.Array) -> jax.Array:
    """Uᵀ y, zero-padded from (m_1, …, m_k) to x's (n_1, …, n_k)."""
    z = _along(y, [u.T for u in p["us"]])
    pads = [(0, 0)] + [(0, v.shape[0] - u.shape[0]) for u, v in zip(p["us"], p["vts"], strict=True)]
    return jnp.pad(z, pads)


def _sep_U(p: Params, z: jax.Array) -> jax.Array:
    """U applied to the first (m_1, …, m_k) spectral coordinates of z."""
    crop = (slice(None),) + tuple(slice(0, u.shape[0]) for u in p["us"])
    return _along(z[crop], p["us"])


def _sep_pinv(p: Params, y: jax.Array) -> jax.Array:
    """A⁺ y = V(s⁺ ⊙ Uᵀ y) (Penrose 1955 via the SVD; Golub & Van Loan 2013, Sec. 5.5.2)."""
    return _sep_V(p, p["s_pinv"] * _sep_Ut(p, y))


SEPARABLE_IMPL = OperatorImpl(A=_sep_A, AT=_sep_AT, pinv=_sep_pinv, Vt=_sep_Vt, V=_sep_V, Ut=_sep_Ut, U=_sep_U)


def separable_operator(mats: Sequence[Any], name: str, rcond: float = 1e-4) -> LinearOperator:
    """A = M_1 ⊗ … ⊗ M_k on the k trailing axes; per-axis SVDs M_i = U_i S_i V_iᵀ in float64 on the host.
    Singular values below ``rcond`` × the largest count as zero in A⁺."""
    require(0.0 <= rcond < 1.0, f"rcond must be in [0, 1), got {rcond}")
    mats64 = [np.asarray(m, np.float64) for m in mats]
    require(all(m.ndim == 2 and m.shape[0] <= m.shape[1] for m in mats64),
            "every per-axis matrix must be m x n with m <= n; transpose or split it")
    us, vts, svals = [], [], []
    for m in mats64:
        u, s, vt = np.linalg.svd(m, full_matrices=True)
        us.append(u)
        vts.append(vt)
        svals.append(np.pad(s, (0, m.shape[1] - m.shape[0])))
    singular = svals[0]
    for s in svals[1:]:
        singular = np.multiply.outer(singular, s)
    keep = singular > rcond * singular.max() if singular.size else singular > 0
    s_pinv = np.where(keep, 1.0 / np.where(keep, singular, 1.0), 0.0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    params = {"mats": [f32(m) for m in mats64], "us": [f32(u) for u in us], "vts": [f32(v) for v in vts],
              "singular": f32(singular), "s_pinv": f32(s_pinv)}
    x_shape = tuple(m.shape[1] for m in mats64)
    y_shape = tuple(m.shape[0] for m in mats64)
    return LinearOperator(params, SEPARABLE_IMPL, name, x_shape, y_shape)


def matrix_operator(matrix: Any, rcond: float = 1e-4) -> LinearOperator:
    """A dense [m, d] matrix (m <= d) on flat vectors [B, d] (the one-axis separable case)."""
    return separable_operator([matrix], "matrix", rcond)


def pool_matrix(n: int, scale: int) -> np.ndarray:
    """The (n/s) × n average-pooling matrix along one axis: row i is 1/s on entries [i s, (i + 1) s)."""
    return np.kron(np.eye(n // scale), np.full((1, scale), 1.0 / scale))


def downsample(x_shape: Sequence[int], scale: int) -> LinearOperator:
    """Average pooling by ``scale`` (s × s blocks) on (H, W, C) images: A Aᵀ = I/s², A⁺ = s² Aᵀ."""
    h, w, c = _image_shape(x_shape)
    require(isinstance(scale, int | np.integer) and scale >= 1, f"scale must be an integer >= 1, got {scale}")
    require(h % scale == 0 and w % scale == 0,
            f"downsampling scale {scale} does not divide the image size {h}x{w}; choose a divisor of both")
    return separable_operator([pool_matrix(h, scale), pool_matrix(w, scale), np.eye(c)], f"downsample_x{scale}")


def gaussian_kernel(sigma: float, radius: int | None = None) -> np.ndarray:
    """k_j ∝ exp(−j²/(2σ²)), j = −r..r, r = ⌈3σ⌉ by default, normalized to sum to one."""
    require(math.isfinite(sigma) and sigma > 0, f"blur sigma must be finite and > 0, got {sigma}")
    r = int(math.ceil(3 * sigma)) if radius is None else int(radius)
    require(r >= 0, f"blur radius must be >= 0, got {r}")
    j = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(j**2) / (2 * sigma**2))
    return k / k.sum()


def convolution_matrix(n: int, kernel: np.ndarray, boundary: str = "reflect") -> np.ndarray:
    """The n × n matrix of y_i = Σ_j k_j x_{i+j} (centered kernel) with the given boundary: 'reflect'
    (half-sample symmetric, numpy.pad 'symmetric'), 'circular' (periodic) or 'zero'."""
    check_choice("blur boundary", boundary, ("reflect", "circular", "zero"))
    r = (len(kernel) - 1) // 2
    require(len(kernel) % 2 == 1 and r <= n,
            f"kernel of length {len(kernel)} needs an odd length <= 2n+1 = {2 * n + 1}; use a smaller radius")
    mat = np.zeros((n, n))
    for i in range(n):
        for j, kj in zip(range(-r, r + 1), kernel, strict=True):
            idx = i + j
            if boundary == "circular":
                idx %= n
            elif boundary == "reflect":
                idx = -idx - 1 if idx < 0 else (2 * n - idx - 1 if idx >= n else idx)
            elif not 0 <= idx < n:
                continue
            mat[i, idx] += kj
    return mat


def blur(x_shape: Sequence[int], sigma: float, radius: int | None = None, boundary: str = "reflect",
         rcond: float = 1e-4) -> LinearOperator:
    """Separable Gaussian blur: the same 1-D Gaussian kernel along H and W, channels independent."""
    h, w, c = _image_shape(x_shape)
    k = gaussian_kernel(sigma, radius)
    mats = [convolution_matrix(h, k, boundary), convolution_matrix(w, k, boundary), np.eye(c)]
    return separable_operator(mats, "blur", rcond)


def colourization(x_shape: Sequence[int]) -> LinearOperator:
    """Grey-scale measurement y = (R + G + B)/3 of (H, W, 3) images: a aᵀ = 1/3, A⁺ = 3 Aᵀ."""
    h, w, c = _image_shape(x_shape)
    require(c == 3, f"colourization needs C = 3 channels, got C = {c}")
    return separable_operator([np.eye(h), np.eye(w), np.full((1, 3), 1.0 / 3.0)], "colourization")


def dense_matrix(op: LinearOperator) -> jax.Array:
    """The [m, d] matrix of ``op`` on flattened inputs (A applied to the standard basis); tests only."""
    d = math.prod(op.x_shape)
    basis = jnp.eye(d, dtype=jnp.float32).reshape((d,) + op.x_shape)
    return op.A(basis).reshape(d, -1).T


__all__ = [
    "LinearOperator", "OperatorImpl", "blur", "box_mask", "colourization", "convolution_matrix", "dense_matrix",
    "downsample", "gaussian_kernel", "half_mask", "mask_operator", "matrix_operator", "pool_matrix",
    "random_mask", "separable_operator",
]
