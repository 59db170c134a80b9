"""Classification losses and metrics, mixup, and the InfoNCE distillation loss.

Masks (``mask``) weight examples: a bool or float array whose shape is a *prefix* of the
labels' shape (e.g. ``(B,)`` "valid" flags for ``(B,)`` or ``(B, L)`` labels, or ``(B, L)``
LM weights); it is broadcast over the remaining trailing axes. Means are
``sum(mask * value) / sum(mask)`` and 0 when the mask sums to 0. Everything is computed in
float32 (or wider).
"""

import jax
import jax.numpy as jnp


def _weights(labels, mask):
  """Float weights of the labels' shape from a prefix-shaped ``mask`` (ones if None)."""
  if mask is None:
    return jnp.ones(labels.shape, jnp.float32)
  mask = jnp.asarray(mask)
  if mask.shape != labels.shape[:mask.ndim]:
    raise ValueError(
        f"mask shape {mask.shape} must be a prefix of the labels shape {labels.shape}")
  mask = mask.reshape(mask.shape + (1,) * (labels.ndim - mask.ndim))
  return jnp.broadcast_to(mask.astype(jnp.float32), labels.shape)


def _weighted_mean(values, weights):
  total = jnp.sum(weights)
  return jnp.where(total > 0, jnp.sum(values * weights) / jnp.where(total > 0, total, 1.0), 0.0)


def _check_logits(logits, labels) -> None:
  if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
    raise ValueError(
        f"logits shape {logits.shape} must be labels shape {labels.shape} + (num_classes,)")


def cross_entropy(logits, labels, mask=None):
  """Mean softmax cross-entropy ``logsumexp(logits) - logits[label]`` over unmasked positions.

  ``logits`` is ``labels.shape + (num_classes,)``, ``labels`` integer class ids (any value
  at masked positions). With mixup the training loss is
  ``lam * cross_entropy(logits, labels_a) + (1 - lam) * cross_entropy(logits, labels_b)``
  (see :func:`mixup`).
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  _check_logits(logits, labels)
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  weights = _weights(labels, mask)
  # masked positions may hold any label (even out of range, which gathers NaN): drop them
  return _weighted_mean(jnp.where(weights > 0, nll, 0.0), weights)


def pm1_mse(outputs, labels, mask=None):
  """Mean over unmasked positions of ``0.5 * mean_c (y_c - outputs_c)^2`` with one-vs-rest
  targets ``y_c = +1`` for the label and ``-1`` otherwise (DataMUX App. A.10: "Labels are +1
  for the correct digit and -1 for the incorrect digits", mean squared error; the 0.5 as
  the official vision notebook, princeton-nlp/DataMUX: ``vision/vision_multiplexing.ipynb``).
  The predicted class is the arg-max output, as with logits (:func:`accuracy`)."""
  outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
  _check_logits(outputs, labels)
  outputs = outputs.astype(jnp.promote_types(outputs.dtype, jnp.float32))
  targets = 2.0 * jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype) - 1.0
  per_example = 0.5 * jnp.mean(jnp.square(targets - outputs), axis=-1)
  weights = _weights(labels, mask)
  return _weighted_mean(jnp.where(weights > 0, per_example, 0.0), weights)


def accuracy(logits, labels, mask=None):
  """Fraction of unmasked positions whose arg-max logit is the label (same weighting)."""
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  _check_logits(logits, labels)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return _weighted_mean(correct, _weights(labels, mask))


def mixup(rng, x, labels, alpha: float):
  """Mixup as in the MIMOConv code: one lam and one permutation per batch.

  Official code: IBM/multiple-input-multiple-output-nets: ``MIMOConv/src/mixup.py``.

  Draws ``lam ~ Beta(alpha, alpha)`` (``lam = 1`` when ``alpha == 0``, i.e. mixup off) and a
  permutation ``perm`` of the batch axis, and returns
  ``(lam * x + (1 - lam) * x[perm], labels, labels[perm], lam)`` = ``(mixed_x, labels_a,
  labels_b, lam)`` with ``lam`` a float32 scalar. Images are mixed before superposition; the
  loss is ``lam * CE(logits, labels_a) + (1 - lam) * CE(logits, labels_b)``, each CE averaged
  over all examples. ``x`` must be floating; ``alpha`` a concrete number >= 0.
  """
  x, labels = jnp.asarray(x), jnp.asarray(labels)
  if not alpha >= 0:
    raise ValueError(f"alpha must be >= 0, got {alpha!r}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"x must be floating to mix, got dtype {x.dtype}")
  if x.ndim < 1 or labels.ndim < 1 or x.shape[0] != labels.shape[0]:
    raise ValueError(f"x shape {x.shape} and labels shape {labels.shape} need one batch axis")
  lam_rng, perm_rng = jax.random.split(rng)
  if alpha > 0:
    lam = jax.random.beta(lam_rng, alpha, alpha, dtype=jnp.float32)
  else:
    lam = jnp.ones((), jnp.float32)
  perm = jax.random.permutation(perm_rng, x.shape[0])
  lam_x = lam.astype(x.dtype)
  mixed = lam_x * x + (1 - lam_x) * x[perm]
  return mixed, labels, labels[perm], lam


def info_nce(student, teacher, temperature: float):
  """InfoNCE distillation loss between matched rows of two ``(B, E)`` embedding sets.

  Row i's logits are the cosine similarities ``cos(student_i, teacher_j) / temperature``
  over the whole batch j; the positive is j = i (cross-entropy, mean over rows). The teacher
  is a fixed target (``stop_gradient``), as in RevMUX (xuyige/RevMUX: ``nn_modules_bert.py``:
  teacher = the single-input path run without gradients, student = the demuxed output,
  cosine x 20, i.e. ``temperature = 0.05``, negatives = the whole minibatch). Equals
  ``log(B)`` when all similarities are equal.
  """
  student, teacher = jnp.asarray(student), jnp.asarray(teacher)
  if student.ndim != 2 or student.shape != teacher.shape:
    raise ValueError(f"student {student.shape} and teacher {teacher.shape} must both be (B, E)")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature!r}")
  dtype = jnp.promote_types(jnp.result_type(student, teacher), jnp.float32)
  teacher = jax.lax.stop_gradient(teacher.astype(dtype))
  student = student.astype(dtype)
  unit_s = student / jnp.maximum(jnp.linalg.norm(student, axis=-1, keepdims=True), 1e-8)
  unit_t = teacher / jnp.maximum(jnp.linalg.norm(teacher, axis=-1, keepdims=True), 1e-8)
  logits = jnp.matmul(unit_s, unit_t.T, precision=jax.lax.Precision.HIGHEST) / temperature
  return cross_entropy(logits, jnp.arange(student.shape[0]))
