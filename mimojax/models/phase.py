"""The settings of a network that change while it trains (``mimojax.train.phases``).

A model module holds one :class:`Phase` as its ``phase`` field; ``model.clone(phase=p)`` is
the one way to get the same network (same parameters and constants) as phase ``p`` runs it.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Phase:
  """What one training or evaluation step runs.

  subgrid: MIMOFormer: FAVOR+S on the [:M/2, :N/2] sub-grid of its keys (App. F.1 warm-up).
  exact_kernel: MIMOFormer with the exp kernel: the exact kernel that the positive features
    estimate (``ops.favor_s_exact_attention``; not in the paper).
  inputs_per_pass: MIMOConv: images per forward pass n, a divisor of N (Sec. 3, dynamic
    inference); None: N.
  task_weight, retrieval_weight: the objective ``task_weight * task loss + retrieval_weight *
    retrieval loss``; DataMUX's retrieval warm-up trains (0, 1), its fine-tuning (0.9, 0.1)
    (DataMUX Sec. 3.3); every other model (1, 0).
  """

  subgrid: bool = False
  exact_kernel: bool = False
  inputs_per_pass: int | None = None
  task_weight: float = 1.0
  retrieval_weight: float = 0.0
