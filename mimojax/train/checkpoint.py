"""Orbax checkpoints: train state, data-iterator state and the resolved config.

Every process calls these functions: Orbax coordinates multi-host saves (each process
writes the shards it owns, process 0 the metadata and JSON items) and restores (each
process reads what its devices need), so the checkpoint directory must be shared by all
hosts (a gs:// bucket on TPU pods). Saves are asynchronous and `close()` waits for them.
A checkpoint does not depend on the process count: one written by P processes restores
in a single process and vice versa, because the train state is saved as global arrays and
the data-iterator position counts global batches.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  """A CheckpointManager in `<workdir>/checkpoints` keeping the last `keep` checkpoints."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=("state", "data", "config"))


def checkpoint_dir(workdir: str) -> str:
  """`<workdir>/checkpoints`, absolute for local paths; URLs (gs://...) are kept as given."""
  path = os.path.join(workdir, "checkpoints")
  return path if "://" in path else os.path.abspath(path)


def save(mngr: ocp.CheckpointManager, step: int, state, data_state: dict, config: dict):
  """Starts an asynchronous save of `state` after `step` completed steps."""
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
      config=ocp.args.JsonSave(config)), force=True)


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
  """(state, data_state) from the latest checkpoint, or None when there is none.

  `abstract_state` holds jax.ShapeDtypeStruct leaves with the target shardings, so the
  restored arrays land directly where the train step expects them.
  """
  step = mngr.latest_step()
  if step is None:
    return None
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
  return restored["state"], restored["data"]


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing `state`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
