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
  """

  subgrid: bool = False
  exact_kernel: bool = False
  inputs_per_pass: int | None = None
