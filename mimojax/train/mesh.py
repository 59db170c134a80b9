"""Device mesh with a `seed` and a `data` axis, and the shardings the train step uses.

Data parallelism is `jax.jit` over this mesh with `NamedSharding` (no pmap). Every train
state leaf has a leading seed axis sharded over `seed`; batches are split over `data`.

Multi-host layout. With several processes (`jax.distributed`), the seed and the data axis
share one mesh laid out so that every process holds all seed rows and one contiguous block
of data columns: process p owns columns [p * D/P, (p + 1) * D/P) of D data columns over P
processes. Hence
  * each process holds every seed's full state (no seed shard is remote, so per-seed
    metrics and the state step can be read on every host), and
  * process p's devices hold rows [p * B/P, (p + 1) * B/P) of a global batch of B rows,
    which is exactly the slice `mimojax.data.train_batches(..., process_index=p,
    process_count=P)` reads; `global_batch` stitches the slices together with
    `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

_AXES = ("seed", "data")
_AXIS_TYPES = (AxisType.Auto, AxisType.Auto)


def make_mesh(seed_devices: int, data_devices: int) -> Mesh:
  """A (seed, data) mesh over seed*data devices; data=-1 takes all remaining devices.

  One process: the first seed*data devices. Several processes: the same number of devices
  from every process, arranged as described in the module docstring.
  """
  total = jax.device_count()
  if seed_devices < 1:
    raise ValueError(f"mesh.seed={seed_devices} must be >= 1")
  if data_devices == -1:
    data_devices = total // seed_devices
  if data_devices < 1 or seed_devices * data_devices > total:
    raise ValueError(
        f"mesh.seed={seed_devices} x mesh.data={data_devices} needs more devices than the "
        f"{total} available")
  if jax.process_count() == 1:
    return jax.make_mesh((seed_devices, data_devices), _AXES, axis_types=_AXIS_TYPES,
                         devices=jax.devices()[:seed_devices * data_devices])
  grid = process_grid(jax.devices(), seed_devices, data_devices, jax.process_count())
  return Mesh(np.array(grid, dtype=object), _AXES, axis_types=_AXIS_TYPES)


def process_grid(devices, seed_devices: int, data_devices: int, process_count: int) -> list:
  """(seed, data) nested list of devices in which process p fills data columns
  [p * D/P, (p + 1) * D/P) on every seed row (D = data_devices, P = process_count).

  `devices` are all global devices (anything with `.process_index` and `.id`); each process
  contributes its first seed_devices * D/P devices in id order.
  """
  if data_devices % process_count:
    raise ValueError(
        f"mesh.data={data_devices} must be a multiple of the {process_count} processes so "
        "that every process holds an equal block of the data axis")
  columns = data_devices // process_count
  rows = [[] for _ in range(seed_devices)]
  for p in range(process_count):
    own = sorted((d for d in devices if d.process_index == p), key=lambda d: d.id)
    if len(own) < seed_devices * columns:
      raise ValueError(
          f"mesh.seed={seed_devices} x mesh.data={data_devices} over {process_count} "
          f"processes needs {seed_devices * columns} devices per process; process {p} has "
          f"{len(own)}")
    for s in range(seed_devices):
      rows[s].extend(own[s * columns:(s + 1) * columns])
  return rows


def seed_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis over `seed`, the rest replicated (train state, per-seed keys/metrics)."""
  return NamedSharding(mesh, P("seed"))


def batch_sharding(mesh: Mesh, step_axis: bool = False) -> NamedSharding:
  """Example axis over `data`: the leading axis, or the second after a leading step axis
  (a stack of batches that one compiled call trains on)."""
  return NamedSharding(mesh, P(None, "data") if step_axis else P("data"))


def global_batch(local_batch: dict, mesh: Mesh, step_axis: bool = False) -> dict:
  """Assembles the global batch from this process's slice (multi-host safe).

  `local_batch` holds rows [p * B/P, (p + 1) * B/P) of the global batch of B rows; every
  process calls this with its own slice and gets the same global array. With `step_axis`,
  every array has a leading step axis and the rows are its second axis.
  """
  sharding = batch_sharding(mesh, step_axis)
  count = jax.process_count()
  row_axis = int(step_axis)

  def build(x):
    x = np.asarray(x)
    shape = list(x.shape)
    shape[row_axis] *= count
    return jax.make_array_from_process_local_data(sharding, x, tuple(shape))

  return {k: build(v) for k, v in local_batch.items()}
