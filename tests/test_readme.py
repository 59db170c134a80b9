"""The README's Python example runs and does what its comments say."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np

from mimojax import ops

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_matches_ops():
  code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
  scope = {}
  exec(compile(code, "README.md", "exec"), scope)  # pylint: disable=exec-used
  out = scope["out"]
  assert out.shape == (8, 128, 4, 64)
  assert bool(jnp.all(jnp.isfinite(out)))
  # With keys of ones on a 1 x 1 grid the same call is plain FAVOR+.
  q, k, v, phi = scope["q"], scope["k"], scope["v"], scope["phi"]
  ones = jnp.ones((1, 1, 64))
  grid1 = lambda x: ops.to_grid(x, 1, 1)
  single = ops.from_grid(ops.favor_s_attention(grid1(q), grid1(k), grid1(v), ones, phi))
  np.testing.assert_allclose(single, ops.favor_attention(q, k, v, phi), rtol=1e-4, atol=1e-5)
