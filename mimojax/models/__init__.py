"""Whole networks and the explicit name -> constructor table (DESIGN.md section 1).

Each constructor takes ``(config, info)`` (the full ml_collections config and the data's
``DataInfo``) and returns a ``flax.linen.Module``.
"""

from mimojax.models.transformer import transformer
from mimojax.models.wide_resnet import mimoconv
from mimojax.models.wide_resnet import wide_isonet
from mimojax.models.wide_resnet import wide_resnet

MODELS = {
    "transformer": transformer,
    "wide_resnet": wide_resnet,
    "wide_isonet": wide_isonet,
    "mimoconv": mimoconv,
}


def build_model(config, info):
  """The module named by ``config.model.name`` (a key of :data:`MODELS`)."""
  name = config.model.name
  if name not in MODELS:
    raise ValueError(f"model.name must be one of {sorted(MODELS)}, got {name!r}")
  return MODELS[name](config, info)
