"""The README's Python example runs as written (so the documented API cannot drift from the code)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["images"].shape == (16, 28, 28, 1) and scope["info"]["nfe"] == 1
    assert np.isfinite(float(scope["metrics"]["loss"])) and float(scope["kl"]) == 0.0
