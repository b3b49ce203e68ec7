"""Layering of the whole package, checked on the source: every gm_jax import of every module (also inside
functions) points at its own package or a layer below it.

    core <- nn <- metrics <- {model families} <- train <- {bench, pretrained} <- cli      data: core only; train and up
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gm_jax"
FAMILIES = {"autoencoders", "autoregressive", "classical", "clip", "diffusion", "flow_matching", "flows", "gan", "vq"}
BELOW = {"core", "nn", "metrics"}
ALLOWED = {
    "core": set(),
    "nn": {"core"},
    "metrics": {"core", "nn"},
    "data": {"core"},
    **{family: BELOW for family in FAMILIES},
    "train": BELOW | FAMILIES | {"data"},
    "bench": BELOW | FAMILIES | {"data", "train"},
    "pretrained": BELOW | FAMILIES | {"data", "train"},
    "cli": BELOW | FAMILIES | {"data", "train", "bench", "pretrained"},
}


def gm_jax_imports(path: Path) -> set[str]:
    """Second-level names ``X`` of every ``gm_jax.X`` imported anywhere in the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        names |= {m.split(".")[1] for m in modules if m.startswith("gm_jax.") and m.count(".") >= 1}
    return names


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def test_every_package_has_a_layer():
    layers = {layer_of(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert layers == set(ALLOWED), sorted(layers ^ set(ALLOWED))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_itself_and_lower_layers(layer):
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if layer_of(p) == layer]
    assert files
    for path in files:
        bad = gm_jax_imports(path) - ALLOWED[layer] - {layer}
        assert not bad, f"{path.relative_to(PACKAGE)} imports gm_jax.{sorted(bad)}"


def test_no_private_jax_imports_and_no_signature_sniffing():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        assert "jax._src" not in text, f"{path.relative_to(PACKAGE)} imports JAX internals"
        assert "inspect.signature" not in text and "import inspect" not in text, \
            f"{path.relative_to(PACKAGE)} inspects signatures"


def test_shared_pieces_live_below_the_families():
    assert "nn" in gm_jax_imports(PACKAGE / "vq" / "prior.py")        # the gated PixelCNN network
    assert "core" in gm_jax_imports(PACKAGE / "flow_matching" / "family.py")  # uniform dequantization
    assert gm_jax_imports(PACKAGE / "nn" / "pixelcnn.py") <= {"core", "nn"}  # nn.im2col: the conv it uses
    assert gm_jax_imports(PACKAGE / "core" / "dequantize.py") <= {"core"}
