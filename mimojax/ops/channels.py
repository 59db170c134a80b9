"""Examples <-> superposition channels.

Two ways to view a batch of examples as groups that share one forward pass:

* the MIMOFormer grid (Sec. 4, Eq. 19): ``(B, ...) -> (B/(m*n), m, n, ...)`` where example
  ``(g*m + i)*n + j`` sits in group ``g``, query-bundle row ``i`` and key/value column ``j``;
* MIMOConv channels with dynamic inference (Sec. 3, App. A.4): ``n`` inputs per pass spread
  over ``N`` channels, channel ``k`` receiving input ``k mod n`` (the official code's
  ``repeat``, i.e. a tile), and the ``N/n`` replica outputs averaged afterwards.

All sizes are static Python ints; a batch that does not divide raises ``ValueError``.
"""

import numbers

import einops
import jax.numpy as jnp


def _check_positive(name: str, value: int) -> None:
  if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_batch(x, group: int, what: str) -> None:
  if x.ndim < 1:
    raise ValueError(f"x must have a leading batch axis, got shape {x.shape}")
  if x.shape[0] % group:
    raise ValueError(
        f"batch size {x.shape[0]} is not divisible by {what} = {group}")


def to_grid(x, m: int, n: int):
  """Views a batch as M x N grids: ``(B, ...) -> (B/(m*n), m, n, ...)``.

  Example ``b = (g*m + i)*n + j`` goes to ``[g, i, j]`` (a plain row-major reshape).
  """
  _check_positive("m", m)
  _check_positive("n", n)
  _check_batch(x, m * n, "m*n")
  return einops.rearrange(x, "(g m n) ... -> g m n ...", m=m, n=n)


def from_grid(x):
  """Inverse of :func:`to_grid`: ``(G, m, n, ...) -> (G*m*n, ...)``."""
  if x.ndim < 3:
    raise ValueError(f"x must have shape (G, m, n, ...), got shape {x.shape}")
  return einops.rearrange(x, "g m n ... -> (g m n) ...")


def _check_channels(num_channels: int, inputs_per_pass: int) -> None:
  _check_positive("num_channels", num_channels)
  _check_positive("inputs_per_pass", inputs_per_pass)
  if num_channels % inputs_per_pass:
    raise ValueError(
        f"inputs_per_pass = {inputs_per_pass} must divide num_channels = {num_channels}")


def assign_channels(x, num_channels: int, inputs_per_pass: int):
  """Fills ``N`` channels with ``n`` inputs per pass: ``(B, ...) -> (B/n, N, ...)``.

  Channel ``k`` of group ``g`` holds example ``g*n + (k mod n)`` (the official
  ``repeat(1, N/n, ...)`` tiles the ``n`` inputs: ``SuperWideResnet.forward`` in
  IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/models/superwideresnet.py``).
  ``n = N`` is the static MIMOConv assignment (channel k <- example g*N + k); ``n = 1``
  copies each input into every channel (slow mode).
  """
  _check_channels(num_channels, inputs_per_pass)
  _check_batch(x, inputs_per_pass, "inputs_per_pass")
  return einops.repeat(jnp.asarray(x), "(g n) ... -> g (r n) ...", n=inputs_per_pass,
                       r=num_channels // inputs_per_pass)


def merge_replicas(y, num_channels: int, inputs_per_pass: int):
  """Averages the ``N/n`` replica outputs of each input: ``(B/n, N, ...) -> (B, ...)``.

  ``y`` holds per-channel outputs laid out as :func:`assign_channels` lays out inputs;
  output ``g*n + i`` is the mean of channels ``i, i + n, i + 2n, ...`` of group ``g``
  (averaged before the shared linear classifier, as ``SuperWideResnet.forward`` in
  IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/models/superwideresnet.py``).
  """
  _check_channels(num_channels, inputs_per_pass)
  if y.ndim < 2 or y.shape[1] != num_channels:
    raise ValueError(
        f"y must have shape (B/n, num_channels = {num_channels}, ...), got shape {y.shape}")
  replicas = einops.rearrange(y, "g (r n) ... -> r (g n) ...", n=inputs_per_pass)
  return jnp.mean(replicas, axis=0)
