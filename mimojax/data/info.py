"""`DataInfo`: what a model and the train loop need to know about a split."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """Vocabulary, classes, padded length, task type ("lm" | "classification" | "dual") and
  the number of examples of one split."""
  vocab_size: int
  num_classes: int
  seq_len: int
  task_type: str
  num_examples: int
