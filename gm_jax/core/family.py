"""The one protocol every model family implements, and the description of the data it is given.

A family module exposes ``make_family(config, spec, inputs=FamilyInputs()) -> Family``: a bundle of pure
functions that close over static configuration (network shapes, optimizers), plus a declaration of what it
can do as data (its sampling and evaluation options, its conditioning kinds). The training loop,
checkpoints, the bench and the CLI only ever see this bundle and read the declaration; they never ask which
family they run, nor inspect a signature.

``FamilyInputs`` carries what the machinery hands a family beyond its config: the evaluation images (a
function of the batch size, so no family imports the data layer) and the loaded runs it builds on
(``Upstream``: config and parameters of another work directory, loaded and verified by the train layer), so
no family reads files.

Batches are dicts of arrays: ``{"x": float32 [B, ...], "label": int32 [B]}`` (``label`` present when the
dataset has classes). Images are ``[B, H, W, C]`` in the range given by ``DataSpec.value_range``. Captioned
data (``DataSpec.text`` set) adds ``"tokens"`` int32 [B, L] and ``"token_mask"`` bool [B, L] (True on a real
token), L = ``DataSpec.text.max_length``: each image's caption encoded with ``DataSpec.text.vocabulary``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gm_jax.core.errors import ConfigError
from gm_jax.core.options import Option, check_options
from gm_jax.core.state import PyTree, TrainState
from gm_jax.core.tokenizer import Vocabulary, encode

Batch = Mapping[str, jax.Array]
Metrics = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class TextSpec:
    """The captions of a captioned dataset, as a family needs them: the vocabulary its token ids index, the
    padded length L of every token row, whether rows are wrapped in ``<bos>``/``<eos>``, and one prompt per
    class (e.g. "a photo of a sneaker") for zero-shot classification."""

    vocabulary: Vocabulary
    max_length: int
    bos_eos: bool = False
    class_prompts: tuple[str, ...] = ()

    def encode(self, prompts: str | tuple[str, ...] | list[str], unknown: str = "error"):
        """``(tokens int32 [N, L], mask bool [N, L])`` of ``prompts`` with this vocabulary and length; an unknown
        word or a prompt longer than L is a one-line ConfigError (:func:`gm_jax.core.tokenizer.encode`)."""
        return encode(self.vocabulary, prompts, self.max_length, unknown=unknown, bos_eos=self.bos_eos)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a family needs to know about its data: the shape of one example (no batch axis), the number of
    classes (0 when unlabelled), the value range of ``x`` (``(-1, 1)``, ``(0, 1)``), whether ``x`` is
    binary, the number of discrete levels of the raw data (256 for 8-bit images, 0 for continuous), and the
    captions' :class:`TextSpec` when batches carry tokens (``None``: no text)."""

    shape: tuple[int, ...]
    num_classes: int = 0
    value_range: tuple[float, float] = (-1.0, 1.0)
    binary: bool = False
    levels: int = 0
    name: str = ""
    text: TextSpec | None = None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def to_symmetric(x: jax.Array, value_range: tuple[float, float]) -> jax.Array:
    """Data in ``value_range = (lo, hi)`` mapped affinely to [−1, 1], float32: ``2 (x − lo)/(hi − lo) − 1``
    (what the image networks of several families see)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return 2.0 * (jnp.asarray(x, jnp.float32) - lo) / (hi - lo) - 1.0


def from_symmetric(u: jax.Array, value_range: tuple[float, float]) -> jax.Array:
    """The inverse of :func:`to_symmetric`: ``lo + (u + 1)(hi − lo)/2``, float32, not clipped."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return lo + (jnp.asarray(u, jnp.float32) + 1.0) * (0.5 * (hi - lo))


CONDITIONING_KINDS = ("label", "text", "image")


@dataclasses.dataclass(frozen=True)
class Upstream:
    """A trained run another family builds on: its config (a plain dict, as in its config.json), its
    sampling parameters (host arrays), the step they were saved at and the work directory it came from."""

    config: Mapping[str, Any]
    params: PyTree
    step: int
    workdir: str = ""


@dataclasses.dataclass(frozen=True)
class FamilyInputs:
    """What the train layer gives ``make_family`` besides config and spec.

    eval_batches: ``batch_size -> iterator of eval batches`` (``None`` outside a run);
    upstream: loaded runs keyed by the config field that names them (e.g. ``"model.prior_of"``)."""

    eval_batches: Callable[[int], Iterator[dict]] | None = None
    upstream: Mapping[str, Upstream] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Family:
    """Pure functions of one model family.

    init(key, example_batch) -> TrainState
    train_step(state, batch, key) -> (state, metrics)        # increments state.step by one
    sample(params, key, num, **kwargs) -> (x, info)          # optional; info["nfe"] where it applies
                                                             # called from the host; compiles its own
                                                             # chain; common kwargs: sampler, steps, eta,
                                                             # guidance, label, temperature
    evaluate(params, batch, key) -> metrics                  # optional; e.g. ELBO, NLL, bits/dim
    restore(params, key, y, op, method, num, **kwargs)       # optional; posterior samples of a linear
        -> (x [num, B, ...], info)                           # inverse problem y = A x + σ_y ε, in the data's
                                                             # value range; info["nfe"]
    edit(params, key, x, strength, num, label=None,          # optional; edits of images x [B, ...] (SDEdit,
         invert=False, **kwargs) -> (x [num, B, ...], info)  # or inversion and regeneration)

    The declaration: ``sample_options`` are the keyword options ``sample`` takes (validated by
    :meth:`check_sample_options` before any work); ``eval_options`` those of evaluation; ``conditioning``
    the kinds of condition ``sample`` accepts, a subset of ``CONDITIONING_KINDS``; ``restore_options`` and
    ``edit_options`` the keyword options of ``restore`` and ``edit`` (``edit_options`` includes
    ``strength``).
    """

    name: str
    init: Callable[[jax.Array, Batch], TrainState]
    train_step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
    sample: Callable[..., tuple[jax.Array, dict[str, Any]]] | None = None
    evaluate: Callable[[PyTree, Batch, jax.Array], Metrics] | None = None
    sample_options: tuple[Option, ...] = ()
    eval_options: tuple[Option, ...] = ()
    conditioning: tuple[str, ...] = ()
    restore: Callable[..., tuple[jax.Array, dict[str, Any]]] | None = None
    restore_options: tuple[Option, ...] = ()
    edit: Callable[..., tuple[jax.Array, dict[str, Any]]] | None = None
    edit_options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.conditioning) - set(CONDITIONING_KINDS)
        if unknown:
            raise ValueError(f"family {self.name}: unknown conditioning kinds {sorted(unknown)}")
        if self.sample is None and self.sample_options:
            raise ValueError(f"family {self.name}: sample options declared but no sample function")
        if self.restore is None and self.restore_options:
            raise ValueError(f"family {self.name}: restore options declared but no restore function")
        if self.edit is None and self.edit_options:
            raise ValueError(f"family {self.name}: edit options declared but no edit function")

    @property
    def can_sample(self) -> bool:
        return self.sample is not None

    def check_sample_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` validated against ``sample_options`` (``None`` values mean "not given")."""
        if not self.can_sample:

            raise ConfigError(f"family {self.name!r} cannot sample")
        return check_options(given, self.sample_options, f"family {self.name!r}")

    def check_eval_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return check_options(given, self.eval_options, f"evaluation of family {self.name!r}")

    @property
    def can_restore(self) -> bool:
        return self.restore is not None

    @property
    def can_edit(self) -> bool:
        return self.edit is not None

    def abilities(self) -> str:
        """What this family can do, in words (for a one-line refusal): e.g. ``train, sample, evaluate``."""
        names = ["train"] + [n for n, f in (("sample", self.sample), ("evaluate", self.evaluate),
                                            ("restore", self.restore), ("edit", self.edit)) if f is not None]
        return ", ".join(names)

    def check_restore_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` validated against ``restore_options`` (``None`` values mean "not given")."""
        if not self.can_restore:
            raise ConfigError(f"family {self.name!r} cannot restore (it can: {self.abilities()}); use a run "
                              "of a family that restores, e.g. diffusion on images")
        return check_options(given, self.restore_options, f"restoration with family {self.name!r}")

    def check_edit_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` validated against ``edit_options`` (``None`` values mean "not given")."""
        if not self.can_edit:
            raise ConfigError(f"family {self.name!r} cannot edit (it can: {self.abilities()}); use a run "
                              "of a family that edits, e.g. diffusion on images")
        return check_options(given, self.edit_options, f"editing with family {self.name!r}")
