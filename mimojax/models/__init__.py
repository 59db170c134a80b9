"""Whole networks and the explicit name -> constructor table.

Each constructor takes ``(config, info)`` (a validated ``mimojax.train.config.Config`` and
the data's ``DataInfo``) and returns a ``flax.linen.Module`` with a ``phase`` field
(``models.Phase``): ``model.clone(phase=p)`` is the network as phase ``p`` runs it.
"""

from mimojax.models.phase import Phase

from mimojax.models.datamux import datamux
from mimojax.models.datamux_vision import datamux_cnn
from mimojax.models.datamux_vision import datamux_mlp
from mimojax.models.revmux import revmux
from mimojax.models.transformer import transformer
from mimojax.models.wide_resnet import mimoconv
from mimojax.models.wide_resnet import wide_isonet
from mimojax.models.wide_resnet import wide_resnet

MODELS = {
    "transformer": transformer,
    "wide_resnet": wide_resnet,
    "wide_isonet": wide_isonet,
    "mimoconv": mimoconv,
    "datamux": datamux,
    "datamux_cnn": datamux_cnn,
    "datamux_mlp": datamux_mlp,
    "revmux": revmux,  # needs its backbone: mimojax.train.backbones.build_model
}


def build_model(config, info):
  """The module named by ``config.model.name`` (a key of :data:`MODELS`)."""
  return MODELS[config.model.name](config, info)
