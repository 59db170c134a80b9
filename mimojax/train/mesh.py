"""Device mesh with a `seed` and a `data` axis, and the shardings the train step uses.

Data parallelism is `jax.jit` over this mesh with `NamedSharding` (no pmap). Every train
state leaf has a leading seed axis sharded over `seed`; batches are split over `data`.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


def make_mesh(seed_devices: int, data_devices: int) -> Mesh:
  """A (seed, data) mesh over the first seed*data devices; data=-1 takes the rest."""
  devices = jax.devices()
  if data_devices == -1:
    data_devices = len(devices) // seed_devices
  if seed_devices < 1 or data_devices < 1 or seed_devices * data_devices > len(devices):
    raise ValueError(
        f"mesh.seed={seed_devices} x mesh.data={data_devices} needs more devices than the "
        f"{len(devices)} available")
  return jax.make_mesh((seed_devices, data_devices), ("seed", "data"),
                       axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=devices[:seed_devices * data_devices])


def seed_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis over `seed`, the rest replicated (train state, per-seed keys/metrics)."""
  return NamedSharding(mesh, P("seed"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) axis over `data`."""
  return NamedSharding(mesh, P("data"))


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Assembles the global batch from this process's slice (multi-host safe)."""
  sharding = batch_sharding(mesh)
  count = jax.process_count()

  def build(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(
        sharding, x, (x.shape[0] * count,) + x.shape[1:])

  return {k: build(v) for k, v in local_batch.items()}
