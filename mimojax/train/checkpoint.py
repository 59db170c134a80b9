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

import functools
import logging
import os

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
from etils import epath
import orbax.checkpoint as ocp

log = logging.getLogger("mimojax")


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


class RestoreError(RuntimeError):
  """Checkpoints exist but none of them can be read."""


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, *, set_aside: bool = False):
  """(state, data_state) from the newest readable checkpoint, or None when there is none.

  `abstract_state` holds jax.ShapeDtypeStruct leaves with the target shardings, so the
  restored arrays land directly where the train step expects them. A step that cannot be
  read, or whose parameters hold NaN/Inf, is reported in one warning line and the next older
  step is tried. With `set_aside`, the unreadable steps newer than the restored one are
  moved to `checkpoints/unreadable-<step>`, so that a resumed run saves those steps again.
  Raises RestoreError when no step can be read.
  """
  failed = []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      state, data_state = restored["state"], restored["data"]
      if not isinstance(data_state, dict):
        raise ValueError(f"the data-iterator state is {type(data_state).__name__}, not a dict")
      bad = nonfinite_leaves(state)
      if bad:
        raise ValueError(f"NaN/Inf in {', '.join(bad)}")
    except Exception as e:  # pylint: disable=broad-except
      failed.append((step, _reason(e)))
      log.warning("checkpoint step %d in %s cannot be read (%s); trying the next older step",
                  step, mngr.directory, failed[-1][1])
      continue
    if failed and set_aside:
      _set_aside(mngr, [s for s, _ in failed])
      log.warning("resuming from checkpoint step %d; moved %s", step, ", ".join(
          f"step {s} to {mngr.directory}/unreadable-{s}" for s, _ in failed))
    return state, data_state
  if not failed:
    return None
  raise RestoreError(
      f"no checkpoint in {mngr.directory} can be read: "
      + "; ".join(f"step {s}: {why}" for s, why in failed)
      + "; move the checkpoints directory away to start from scratch")


def latest_variables(workdir: str) -> dict:
  """``{"params": ..., "model_state": ...}`` (host numpy, leading seed axis) of the newest
  checkpoint of the run in ``workdir``, read without knowing its model; ValueError when it has
  none."""
  if not saved_steps(workdir):
    raise ValueError(f"train.init_from={workdir!r} has no checkpoint in "
                     f"{checkpoint_dir(workdir)}")
  return variables_at(workdir)[0]


def saved_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints in ``workdir``, ascending (empty when there are none)."""
  path = epath.Path(checkpoint_dir(workdir))
  return sorted(ocp.utils.checkpoint_steps(path)) if path.is_dir() else []


def variables_at(workdir: str, step: int | None = None) -> tuple[dict, dict, int]:
  """(variables, config dict, step) of checkpoint ``step`` (default: the newest) of the run in
  ``workdir``: ``{"params", "model_state"}`` as host numpy with a leading seed axis and the
  resolved config saved with them, read without knowing the model and on any device layout
  (the arrays are read whole onto this process's first device). The step must exist."""
  mngr = ocp.CheckpointManager(checkpoint_dir(workdir), item_names=("state", "data", "config"))
  try:
    step = mngr.latest_step() if step is None else step
    config = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  finally:
    mngr.close()
  path = epath.Path(checkpoint_dir(workdir)) / str(step) / "state"
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  checkpointer = ocp.StandardCheckpointer()
  try:
    stored = checkpointer.metadata(path).item_metadata
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                          stored)
    state = checkpointer.restore(path, target)
  finally:
    checkpointer.close()
  variables = {"params": state["params"], "model_state": state["model_state"]}
  return jax.tree.map(np.asarray, variables), dict(config["config"]), step


def transfer(state, source: dict):
  """``state`` with every parameter and model constant that ``source`` (``latest_variables``)
  holds under the same path with the same shape (a source with one seed serves every seed);
  returns (state, names taken, names kept from ``state``)."""
  flat_source = {jax.tree_util.keystr(p, simple=True, separator="/"): v for p, v in
                 jax.tree_util.tree_leaves_with_path(source)}
  taken, kept = [], []

  def pick(path, leaf):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    value = flat_source.get(name)
    if value is not None and value.shape[1:] == leaf.shape[1:] and value.shape[0] in (
        1, leaf.shape[0]) and value.dtype == leaf.dtype:
      taken.append(name)
      value = np.broadcast_to(value, leaf.shape)
      return jax.device_put(value, leaf.sharding)
    kept.append(name)
    return leaf

  tree = jax.tree_util.tree_map_with_path(
      pick, {"params": state.params, "model_state": state.model_state})
  return state.replace(params=tree["params"], model_state=tree["model_state"]), taken, kept


def _reason(error: BaseException) -> str:
  """`Type: first line of the message`, at most 200 characters."""
  text = str(error).split(" See full TensorStore details")[0]
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
  return text if len(text) <= 200 else text[:197] + "..."


def _set_aside(mngr: ocp.CheckpointManager, steps) -> None:
  """Moves the step directories `steps` to `unreadable-<step>` (process 0; all processes
  wait for it) and makes `mngr` forget them."""
  if jax.process_index() == 0:
    root = epath.Path(mngr.directory)
    for step in steps:
      target = root / f"unreadable-{step}"
      n = 1
      while target.exists():
        target, n = root / f"unreadable-{step}-{n}", n + 1
      (root / str(step)).rename(target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("mimojax_checkpoint_set_aside")
  mngr.reload()


def nonfinite_leaves(state) -> list[str]:
  """Paths of the parameters and model statistics of `state` that hold NaN or Inf."""
  tree = {"params": state.params, "model_state": state.model_state}
  flat = [(jax.tree_util.keystr(path, simple=True, separator="/"), leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
          if jnp.issubdtype(leaf.dtype, jnp.inexact)]
  if not flat:
    return []
  sharding = flat[0][1].sharding
  replicated = (jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
                if isinstance(sharding, jax.sharding.NamedSharding) else None)
  finite = np.asarray(_all_finite(replicated)([leaf for _, leaf in flat]))
  return [name for (name, _), ok in zip(flat, finite) if not ok]


@functools.cache
def _all_finite(out_sharding):
  """Jitted leaves -> one bool per leaf, on every process (replicated)."""
  return jax.jit(lambda leaves: jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]),
                 out_shardings=out_sharding)


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) describing `state`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
