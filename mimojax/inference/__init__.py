"""Inference for trained runs: restore a workdir, evaluate every inputs-per-pass mode, serve.

``restore.load(workdir, step)`` -> ``Run`` (typed config, variables per seed);
``modes.modes(config)`` -> the modes the model family declares (``modes.MODES``);
``evaluate.evaluate(run, split, names, batch_size)`` -> accuracy per mode per seed and
examples per second (the entry point is ``python -m mimojax.evaluate``);
``predictor.Predictor.load(workdir).predict(inputs)`` -> logits in input order;
``scheduler.Scheduler`` chooses a mode per call from the queue depth;
``regroup.regrouped_accuracy`` -> the mean accuracy over several regroupings of a test set
(RevMUX's protocol; ``python -m mimojax.inference.regroup``).
"""

from mimojax.inference.predictor import Predictor
from mimojax.inference.scheduler import Scheduler

__all__ = ["Predictor", "Scheduler"]
