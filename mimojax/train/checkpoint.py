"""Orbax checkpoints: train state, data-iterator state and the resolved config.

Every process calls these functions (Orbax coordinates multi-host saves); saves are
asynchronous and `close()` waits for them.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, every_steps: int, keep: int) -> ocp.CheckpointManager:
  """A CheckpointManager in `<workdir>/checkpoints` keeping the last `keep` checkpoints."""
  options = ocp.CheckpointManagerOptions(save_interval_steps=every_steps, max_to_keep=keep,
                                         create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options, item_names=("state", "data", "config"))


def save(mngr: ocp.CheckpointManager, step: int, state, data_state: dict, config: dict,
         force: bool = False) -> bool:
  """Saves when the interval policy asks (or `force`); returns whether it saved."""
  return mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
      config=ocp.args.JsonSave(config)), force=force)


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
