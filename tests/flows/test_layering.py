"""Layering of the exact-likelihood and latent-code families: each imports only its own package and the
layers below (core <- nn <- metrics), never another model family, train or the CLI (checked on the source)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gm_jax"
BELOW = {"core", "nn", "metrics"}


def gm_jax_imports(path: Path) -> set[str]:
    """Second-level names ``X`` of every ``gm_jax.X`` imported anywhere in the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        names |= {m.split(".")[1] for m in modules if m.startswith("gm_jax.") and m.count(".") >= 1}
    return names


@pytest.mark.parametrize("family", ["autoregressive", "flows", "flow_matching", "vq"])
def test_family_imports_only_itself_and_lower_layers(family):
    files = sorted((PACKAGE / family).glob("*.py"))
    assert files
    for path in files:
        bad = gm_jax_imports(path) - BELOW - {family}
        assert not bad, f"{path.relative_to(PACKAGE)} imports gm_jax.{sorted(bad)}"


def test_shared_pieces_live_below_the_families():
    assert "nn" in gm_jax_imports(PACKAGE / "vq" / "prior.py")        # the gated PixelCNN network
    assert "core" in gm_jax_imports(PACKAGE / "flow_matching" / "family.py")  # uniform dequantization
    assert gm_jax_imports(PACKAGE / "nn" / "pixelcnn.py") <= {"core", "nn"}  # nn.im2col: the conv it uses
    assert gm_jax_imports(PACKAGE / "core" / "dequantize.py") <= {"core"}
