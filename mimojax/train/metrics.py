"""Metrics output: `metrics.jsonl`, TensorBoard events (tensorboardX) and progress display.

Only process 0 writes; other processes get a writer that does nothing.
"""

from __future__ import annotations

import json
import logging
import sys

import jax
import numpy as np
from etils import epath
import tqdm


class MetricWriter:
  """Appends `{"step", "split", name: value}` lines to metrics.jsonl and TensorBoard."""

  def __init__(self, workdir: str, total_steps: int, initial_step: int = 0):
    self.active = jax.process_index() == 0
    self._bar = None
    if not self.active:
      return
    # epath reads and writes local paths and gs:// alike. GCS objects cannot be appended
    # to, so the (small) file is rewritten whole on every write. A resumed run keeps the
    # lines up to its restored step and drops those that the interrupted run wrote after
    # its last checkpoint (the resumed run writes them again); TensorBoard purges likewise.
    self._path = epath.Path(workdir) / "metrics.jsonl"
    self._path.parent.mkdir(parents=True, exist_ok=True)
    lines = self._path.read_text().splitlines(keepends=True) if self._path.exists() else []
    kept = [line for line in lines if json.loads(line)["step"] <= initial_step]
    self._text = "".join(kept)
    if len(kept) < len(lines):
      self._path.write_text(self._text)
    from tensorboardX import SummaryWriter  # imported lazily: only process 0 needs it
    self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"),
                             purge_step=initial_step + 1 if initial_step else None)
    if sys.stderr.isatty():
      self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.active:
      return
    row = {"step": int(step), "split": split}
    for name, value in metrics.items():
      row[name] = _jsonable(value)
    self._text += json.dumps(row) + "\n"
    self._path.write_text(self._text)
    for name, value in row.items():
      if isinstance(value, float):
        self._tb.add_scalar(f"{split}/{name}", value, int(step))
    summary = " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
    if self._bar is not None:
      self._bar.set_postfix_str(f"{split}: {summary}", refresh=False)
    else:
      logging.getLogger("mimojax").info("step %d %s: %s", step, split, summary)

  def advance(self, step: int) -> None:
    if self._bar is not None:
      self._bar.update(step - self._bar.n)

  def close(self) -> None:
    if not self.active:
      return
    if self._bar is not None:
      self._bar.close()
    self._tb.close()


def _jsonable(value):
  value = np.asarray(value)
  if value.ndim == 0:
    return float(value)
  return [float(v) for v in value.reshape(-1)]


def summarize_seeds(name: str, per_seed) -> dict:
  """{name: mean, name_std: std, name_per_seed: [...]} (just {name: value} for one seed)."""
  per_seed = np.asarray(per_seed, np.float64).reshape(-1)
  if per_seed.size == 1:
    return {name: float(per_seed[0])}
  return {name: float(per_seed.mean()), f"{name}_std": float(per_seed.std()),
          f"{name}_per_seed": [float(v) for v in per_seed]}
