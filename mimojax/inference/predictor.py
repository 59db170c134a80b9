"""Run a trained network on new inputs: group them into superpositions, fill, unscramble.

``Predictor.load(workdir)`` restores a run (``inference.restore``) and ``predict(inputs)``
returns the logits of any number of inputs in input order. Inputs are cut into groups of the
mode's inputs per pass (consecutive inputs share a superposition), groups are packed into
compiled calls of ``batch_size`` inputs, and one program is compiled per mode. The last
group is completed with filler inputs that the network leaves out of the superposition (the
model's ``valid`` argument: MIMOConv zeroes their stem features, DataMUX their embeddings,
MIMOFormer their rows and queries), and calls are completed with whole filler groups, so an
input's output depends only on the real inputs it is superposed with: never on the filler,
nor on how its groups were packed into calls. With ``tenants``, only inputs of the same
tenant share a superposition (DataMUX App. A.1 names leakage between users multiplexed
together as a risk).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mimojax.inference import modes as modes_lib
from mimojax.inference import restore

FILLER = -1  # the input index of a filler slot in a plan


def plan(count: int, group: int, tenants=None) -> np.ndarray:
  """(groups, group) input indices: inputs in order, cut into groups of ``group``; with
  ``tenants`` (one label per input) the inputs of each tenant (in order of first appearance)
  are cut separately. Slots past a tenant's last input hold ``FILLER``."""
  if tenants is None:
    streams = [np.arange(count)]
  else:
    tenants = np.asarray(tenants)
    if tenants.shape != (count,):
      raise ValueError(f"tenants must hold one label per input: got shape {tenants.shape} "
                       f"for {count} inputs")
    _, first = np.unique(tenants, return_index=True)
    streams = [np.flatnonzero(tenants == tenants[i]) for i in np.sort(first)]
  rows = []
  for stream in streams:
    padded = np.full(math.ceil(len(stream) / group) * group, FILLER)
    padded[:len(stream)] = stream
    rows.append(padded.reshape(-1, group))
  return np.concatenate(rows) if rows else np.zeros((0, group), int)


class Predictor:
  """A trained network that answers ``predict(inputs)`` (see the module doc).

  ``model`` is the run's module, ``variables`` one model's ``{"params", "model_state"}``,
  ``modes`` its ``inference.modes`` (the first is the default), ``batch_size`` the inputs of
  one compiled call (a multiple of every mode's inputs per pass).
  """

  def __init__(self, model, variables: dict, modes: dict, batch_size: int):
    self.model = model
    self.modes = dict(modes)
    self.mode = next(iter(self.modes))
    for mode in self.modes.values():
      if batch_size < 1 or batch_size % mode.inputs_per_pass:
        raise ValueError(f"batch_size={batch_size} must be a positive multiple of the "
                         f"{mode.inputs_per_pass} inputs per pass of mode {mode.name!r}")
    if getattr(model, "bn_eval_batch_stats", False):
      raise ValueError("model.bn_eval_batch_stats=True normalises with the statistics of each "
                       "call's batch: an input's output would depend on the other inputs")
    self.batch_size = batch_size
    self.variables = jax.device_put({"params": variables["params"],
                                     **variables["model_state"]})
    self._compiled = {}

  @classmethod
  def load(cls, workdir: str, *, step: int | None = None, seed: int = 0,
           batch_size: int | None = None) -> "Predictor":
    """The network of seed ``seed`` at checkpoint ``step`` (None: the newest) of the run in
    ``workdir``; ``batch_size`` defaults to the run's evaluation batch size."""
    run = restore.load(workdir, step)
    model, info = restore.build_model(run.config)
    if info.task_type != "classification":
      raise ValueError(f"the predictor serves classifiers; data.name={run.config.data.name!r} "
                       f"is a {info.task_type!r} task")
    return cls(model, run.seed_variables(seed), modes_lib.modes(run.config),
               batch_size or run.config.eval.batch_size)

  def _call_fn(self, name: str):
    """The compiled ``(variables, inputs, valid) -> logits`` of mode ``name``."""
    if name not in self._compiled:
      mode = self.modes[name]
      model = self.model.clone(phase=mode.phase)
      masked = mode.inputs_per_pass > 1  # a group of one never holds a filler beside an input

      def call(variables, inputs, valid):
        kwargs = dict(inputs, valid=valid) if masked else dict(inputs)
        return model.apply(variables, **kwargs, train=False)

      self._compiled[name] = jax.jit(call)
    return self._compiled[name]

  def forward(self, inputs, valid, mode: str | None = None) -> np.ndarray:
    """Logits of one call: ``inputs`` (an array or a dict of model inputs) of ``batch_size``
    rows, consecutive rows forming the groups of ``mode``; rows with ``valid`` False are
    filler."""
    name = self._mode_name(mode)
    inputs = inputs if isinstance(inputs, dict) else {"inputs": inputs}
    logits = self._call_fn(name)(self.variables, {k: jnp.asarray(v) for k, v in inputs.items()},
                                 jnp.asarray(valid, bool))
    return np.asarray(logits)

  def predict(self, inputs, *, mode: str | None = None, tenants=None) -> np.ndarray:
    """Logits ``(len(inputs), classes)`` in input order; ``inputs`` an array (or a dict of
    arrays) with the examples on the leading axis, as the run's data source yields them;
    ``mode`` a name of ``modes`` (default: the first, most inputs per pass); ``tenants`` one
    label per input: only inputs of one tenant share a superposition."""
    name = self._mode_name(mode)
    arrays = inputs if isinstance(inputs, dict) else {"inputs": inputs}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    count = len(next(iter(arrays.values())))
    out = np.zeros((count, self.model.num_classes), np.float32)
    groups = plan(count, self.modes[name].inputs_per_pass, tenants)
    per_call = self.batch_size // groups.shape[1]
    calls = math.ceil(len(groups) / per_call)
    slots = np.full((calls * per_call, groups.shape[1]), FILLER)
    slots[:len(groups)] = groups
    for index in slots.reshape(calls, self.batch_size):
      valid = index != FILLER
      batch = {k: np.where(_rows(valid, v), v[np.where(valid, index, 0)], 0).astype(v.dtype)
               for k, v in arrays.items()}
      out[index[valid]] = self.forward(batch, valid, name)[valid]
    return out

  def _mode_name(self, mode: str | None) -> str:
    if mode is None:
      return self.mode
    if mode not in self.modes:
      raise ValueError(f"mode={mode!r} is not a mode of this run; allowed: {list(self.modes)}")
    return mode


def _rows(valid, array):
  """``valid`` (B,) broadcast against ``array``'s rows."""
  return valid.reshape((-1,) + (1,) * (array.ndim - 1))
