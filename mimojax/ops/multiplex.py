"""DataMUX multiplexing (Murahari et al., 2022, Sec. 3 and App. A.10): the per-instance
transforms phi_i that map N inputs into one representation, and the index-prefix and
retrieval bookkeeping of its demultiplexer and warm-up task.

A batch of B = G*N rows is viewed as G groups of N instances, instance i of group g being
row ``g*N + i`` (as ``channels.to_grid`` with M = 1). Muxes act on the last (feature) axis:

* Hadamard: ``x = (1/N) sum_i v_i (.) e_i`` with Gaussian ``v_i`` (rows L2-normalised, times
  a norm: 20 for the retrieval warm-up, 1 for fine-tuning) or binary chunk indicators
  (princeton-nlp/DataMUX: ``models/utils.py`` ``random_encoding``, ``binary_encoding``;
  ``models/multiplexing.py``, the Hadamard branch).
* Matrix: ``x = (1/sqrt(N)) sum_i W_i e_i`` with Haar-random orthogonal ``W_i`` or the LowRank
  matrices (the ``random_ortho`` / ``random_ortho_low_rank`` branch: a sum over sqrt(N), not a
  mean).

RevMUX (Xu et al., 2024) mixes N instances by a reversible additive coupling of contiguous
feature blocks (:func:`revmux_mux`) and separates them by its exact inverse
(:func:`revmux_demux`); the coupling's maps F_k are passed in as functions.

Pure functions; randomness enters only through explicit ``rng`` arguments.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_vectors(rng, num: int, dim: int, norm: float = 1.0):
  """(num, dim) Gaussian vectors, each row L2-normalised then scaled to ``norm``."""
  v = jax.random.normal(rng, (num, dim), jnp.float32)
  return norm * v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def binary_vectors(num: int, dim: int, overlap: float = 0.0):
  """(num, dim) 0/1 indicators of contiguous chunks of ``dim // num`` features, the last
  chunk taking the remainder. ``overlap`` (epsilon in [0, 1]) widens every inner chunk
  boundary by ``epsilon/2`` of a chunk on each side, truncated to whole features as the
  official integer arithmetic does. With ``overlap = 0`` the supports are disjoint and the
  rows sum to one."""
  if not 0 <= overlap <= 1:
    raise ValueError(f"overlap={overlap!r} is out of range; allowed: [0, 1]")
  if num > dim:
    raise ValueError(f"{num} instances need at least {num} features, got {dim}")
  chunk = dim // num
  extra = overlap / 2 * chunk
  out = np.zeros((num, dim), np.float32)
  for i in range(num):
    start = int(i * chunk - extra) if i > 0 else 0
    end = int((i + 1) * chunk + extra) if i < num - 1 else dim
    out[i, start:end] = 1.0
  return jnp.asarray(out)


def haar_orthogonal(rng, num: int, dim: int):
  """(num, dim, dim) independent Haar-distributed orthogonal matrices (QR of a Gaussian
  with the signs of R's diagonal moved into Q, as scipy's ``ortho_group``)."""
  z = jax.random.normal(rng, (num, dim, dim), jnp.float32)
  q, r = jnp.linalg.qr(z)
  return q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def low_rank_matrices(rng, num: int, dim: int):
  """(num, dim, dim) LowRank muxes (DataMUX App. A.10, Fig. 6a): ``W_i = U G_i^T`` where
  ``G_i`` keeps the columns of chunk i (``dim // num`` wide) of one random orthogonal ``H``
  and zeroes the rest, and ``U`` is another random orthogonal matrix
  (princeton-nlp/DataMUX: ``models/multiplexing.py``, ``random_ortho_low_rank``). Each
  instance is projected on its own ``dim // num``-dimensional subspace, disjoint from the
  others'."""
  if num > dim:
    raise ValueError(f"{num} instances need at least {num} features, got {dim}")
  h, u = haar_orthogonal(rng, 2, dim)
  chunk = dim // num
  columns = jnp.arange(dim)
  keep = (columns[None, :] >= chunk * jnp.arange(num)[:, None]) & (
      columns[None, :] < chunk * (jnp.arange(num)[:, None] + 1))
  g = h[None] * keep[:, None, :]  # (num, dim, dim): H with the other chunks' columns zeroed
  return jnp.einsum("ab,ncb->nac", u, g)


def _check_instances(x, num: int, what: str) -> None:
  if x.ndim < 3 or x.shape[1] != num:
    raise ValueError(f"x must be (G, N, ..., D) with N = {num} {what}, got shape {x.shape}")


def hadamard_mux(x, vectors):
  """``(1/N) sum_i v_i (.) x_i``: x (G, N, ..., D), vectors (N, D) -> (G, ..., D)."""
  _check_instances(x, vectors.shape[0], "vectors")
  v = vectors.reshape((1, vectors.shape[0]) + (1,) * (x.ndim - 3) + vectors.shape[-1:])
  return jnp.mean(x * v.astype(x.dtype), axis=1)


def matrix_mux(x, matrices):
  """``(1/sqrt(N)) sum_i W_i x_i`` (each feature vector a column): x (G, N, ..., D),
  matrices (N, D, D) -> (G, ..., D)."""
  num = matrices.shape[0]
  _check_instances(x, num, "matrices")
  mixed = jnp.einsum("gn...d,ned->g...e", x, matrices.astype(x.dtype))
  return mixed / math.sqrt(num)


def index_prefix(ids, num: int, first_id: int):
  """The index-embedding prefix of DataMUX's demultiplexer: (G*N, L) token ids ->
  (G*N, N + 1 + L). Row ``g*N + i`` starts with its row of an N x N block, index token
  ``first_id + i`` on the diagonal and the filler ``first_id + N`` elsewhere, then the shared
  summary token ``first_id + N + 1`` (princeton-nlp/DataMUX: ``models/multiplexing.py``,
  the ``index`` demuxing variant, which takes these ids from the top of RoBERTa's vocabulary).
  After the mux, position j < N carries instance j's index and position N the summary."""
  rows, _ = ids.shape
  if rows % num:
    raise ValueError(f"batch {rows} is not divisible by the {num} instances per group")
  block = jnp.where(jnp.eye(num, dtype=bool), first_id + jnp.arange(num)[:, None],
                    first_id + num)
  block = jnp.concatenate([block, jnp.full((num, 1), first_id + num + 1)], axis=1)
  prefix = jnp.tile(block, (rows // num, 1)).astype(ids.dtype)
  return jnp.concatenate([prefix, ids], axis=1)


def retrieval_targets(ids, choice):
  """The retrieval warm-up's targets (DataMUX Sec. 3.3): ``ids[g, choice[g, t], t]``, the
  token at position t of the instance chosen for that position. ids (G, N, L) ints, choice
  (G, L) in [0, N) -> (G, L)."""
  if ids.ndim != 3 or choice.shape != (ids.shape[0], ids.shape[2]):
    raise ValueError(f"ids must be (G, N, L) and choice (G, L), got {ids.shape} and "
                     f"{choice.shape}")
  return jnp.take_along_axis(ids, choice[:, None, :], axis=1)[:, 0]


# ------------------------------------------------------------------ RevMUX


def _check_fns(num: int, fns) -> None:
  if len(fns) != num:
    raise ValueError(f"the reversible coupling of {num} instances needs {num} functions F_j, "
                     f"got {len(fns)}")


def revmux_mux(blocks, fns):
  """RevMUX's reversible multiplexer (Xu et al., 2024, poster "Reversible Multiplexer"):
  blocks (G, N, ..., D) -> (G, ..., N*D), the concatenation ``[o_1; ...; o_N]`` of contiguous
  blocks of width D.

  N = 2 is the poster's coupling ``o_1 = i_1 + F(i_2)``, ``o_2 = i_2 + G(o_1)``; N > 2 the
  chained additive coupling of the official BERT code (xuyige/RevMUX: ``nn_modules_bert.py``
  ``compute_invertible_representations``, instance order reversed)
  ``o_1 = i_1 + F_1(i_2)``, ``o_k = i_k + F_k(o_{k-1})`` for k = 2..N; N = 1 is the identity.
  ``fns`` are the N maps F_k, (..., D) -> (..., D); :func:`revmux_demux` inverts the mux
  exactly with the same maps."""
  num = blocks.shape[1]
  _check_fns(num, fns)
  if num == 1:
    return blocks[:, 0]
  outs = [blocks[:, 0] + fns[0](blocks[:, 1])]
  for k in range(1, num):
    outs.append(blocks[:, k] + fns[k](outs[-1]))
  return jnp.concatenate(outs, axis=-1)


def revmux_demux(o, fns):
  """RevMUX's reverse demultiplexer, the exact inverse of :func:`revmux_mux` with the same
  maps: o (G, ..., N*D) -> (G, N, ..., D). Contiguous blocks ``o_k``;
  ``i_k = o_k - F_k(o_{k-1})`` for k = N..2, then ``i_1 = o_1 - F_1(i_2)`` (the poster's
  "Reverse Demultiplexer": i_2 = o_2 - G(o_1), i_1 = o_1 - F(i_2))."""
  num = len(fns)
  if o.shape[-1] % num:
    raise ValueError(f"feature size {o.shape[-1]} is not divisible by the {num} instances")
  width = o.shape[-1] // num
  outs = [o[..., k * width:(k + 1) * width] for k in range(num)]
  if num == 1:
    return outs[0][:, None]
  ins = [None] * num
  for k in range(num - 1, 0, -1):
    ins[k] = outs[k] - fns[k](outs[k - 1])
  ins[0] = outs[0] - fns[0](ins[1])
  return jnp.stack(ins, axis=1)
