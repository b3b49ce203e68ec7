"""Which module builds each family named by ``config.model.family``, and what each declares as data.

Modules are imported on first use, so a run pays only for the family it trains. Every module provides
``make_family(config, spec, inputs=FamilyInputs()) -> gm_jax.core.Family``, ``model_defaults() ->
ConfigDict`` and ``SAMPLE_OPTIONS`` (every run-time sampling option any of its families takes, for the CLI's
flags and ``--help``; a built family declares its exact set in ``Family.sample_options``).

A registry entry also names the config fields that point at other work directories the family builds on
(``upstream``); the train layer loads and verifies those runs and hands them to ``make_family`` as
``FamilyInputs.upstream`` (config and parameters, never a path to read). Where the family keeps an upstream
run's parameters inside its own (frozen), the entry says where (``embedded``), so a model exported to the
gallery carries its upstream runs with it (:mod:`gm_jax.pretrained`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from gm_jax.core.errors import check_choice
from gm_jax.core.family import DataSpec, Family, FamilyInputs
from gm_jax.core.options import Option


@dataclasses.dataclass(frozen=True)
class FamilyEntry:
    """module: the module with ``make_family``; upstream: config fields (dotted) that may name the work
    directory of a run this family builds on ('' in the config: none); embedded: for such a field, where the
    upstream run's sampling parameters sit in this family's parameters, ``(key, upstream_key)``: the
    upstream parameters are ``{upstream_key: params[key]}``, or ``params[key]`` itself when upstream_key is ''."""

    module: str
    upstream: tuple[str, ...] = ()
    embedded: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)


FAMILIES: dict[str, FamilyEntry] = {
    "autoencoder": FamilyEntry("gm_jax.autoencoders.family"),
    "vae": FamilyEntry("gm_jax.autoencoders.family"),
    "gan": FamilyEntry("gm_jax.gan.family"),
    "gmm": FamilyEntry("gm_jax.classical.family"),
    "bernoulli_mixture": FamilyEntry("gm_jax.classical.family"),
    "rbm": FamilyEntry("gm_jax.classical.family"),
    "flow": FamilyEntry("gm_jax.flows.family"),
    "pixelcnn": FamilyEntry("gm_jax.autoregressive.family"),
    "vqvae": FamilyEntry("gm_jax.vq.family", upstream=("model.prior_of",),
                         embedded={"model.prior_of": ("vqvae", "")}),
    "diffusion": FamilyEntry("gm_jax.diffusion.family"),
    "latent_diffusion": FamilyEntry("gm_jax.diffusion.latent_family",
                                    upstream=("model.first_stage", "model.text_encoder_of"),
                                    embedded={"model.first_stage": ("autoencoder", "autoencoder"),
                                              "model.text_encoder_of": ("clip", "clip")}),
    "flow_matching": FamilyEntry("gm_jax.flow_matching.family"),
    "kl_autoencoder": FamilyEntry("gm_jax.autoencoders.kl_family"),
    "clip": FamilyEntry("gm_jax.clip.family"),
}


def family_module(name: str) -> Any:
    """The module that implements family ``name``."""
    check_choice("model.family", name, FAMILIES)
    return importlib.import_module(FAMILIES[name].module)


def upstream_fields(config: Any) -> dict[str, str]:
    """``{field: workdir}`` of the runs ``config`` builds on (the entry's upstream fields that are set)."""
    check_choice("model.family", config.model.family, FAMILIES)
    out = {}
    for field in FAMILIES[config.model.family].upstream:
        section, name = field.split(".", 1)
        value = config[section].get(name, "")
        if value:
            out[field] = str(value)
    return out


def embedded_upstream(family: str, field: str, params: Mapping[str, Any]) -> Any:
    """The sampling parameters of the upstream run of ``field`` as kept inside ``params`` of a ``family``
    model (the entry's ``embedded`` declaration); a ConfigError when the family does not keep them."""
    check_choice("model.family", family, FAMILIES)
    where = FAMILIES[family].embedded
    check_choice(f"upstream field of a {family} model kept in its parameters", field, where)
    key, upstream_key = where[field]
    return {upstream_key: params[key]} if upstream_key else params[key]


def build_family(config: Any, spec: DataSpec, inputs: FamilyInputs | None = None) -> Family:
    """``make_family(config, spec, inputs)`` of the module named by ``config.model.family``."""
    return family_module(config.model.family).make_family(config, spec, inputs or FamilyInputs())


def declared_methods() -> dict[str, list[str]]:
    """Every restoration method of the family modules' ``RESTORE_METHODS`` tables (method -> the names of
    its options), in the modules' order of :data:`FAMILIES` sorted by family name; a method declared twice
    must take the same options."""
    out: dict[str, list[str]] = {}
    for name in sorted(FAMILIES):
        for method, takes in getattr(family_module(name), "RESTORE_METHODS", {}).items():
            if out.setdefault(method, list(takes)) != list(takes):
                raise ValueError(f"restoration method {method!r} is declared with different options")
    return out


def declared_options(attribute: str) -> dict[str, tuple[list[Option], list[str]]]:
    """Every option of the family modules' table ``attribute`` (``SAMPLE_OPTIONS``, ``RESTORE_OPTIONS``,
    ``EDIT_OPTIONS``), name -> (its declarations, the families that declare it); a module without the table
    declares nothing. The CLI reads these through their JSON snapshot (:mod:`gm_jax.train.declared`)."""
    out: dict[str, tuple[list[Option], list[str]]] = {}
    for name in sorted(FAMILIES):
        for o in getattr(family_module(name), attribute, ()):
            decls, names = out.setdefault(o.name, ([], []))
            if o not in decls:
                decls.append(o)
            if name not in names:
                names.append(name)
    return out
