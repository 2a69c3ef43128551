"""Super-resolution models: a registry of built-in architectures and model analysis.

Every model maps ``(N, in_channels, h, w)`` to ``(N, 1, h * scale, w * scale)`` for any
``h`` and ``w`` and has the attributes ``in_channels``, ``scale`` and ``arch`` (a
JSON-serialisable dict; ``create_model(**model.arch)`` rebuilds it, and
``create_model(**complete_arch(arch))`` a saved one). Training and
prediction need only ``forward``: any ``nn.Module`` with that call signature works, and
:func:`model_cost` and :func:`receptive_field` measure it as a black box.

Built-in configurations at ``in_channels=1``, ``scale=4`` (FLOPs per output pixel from
``model_cost(model, tile=256)``, 2 per multiply-accumulate; receptive-field radius in
input pixels from ``receptive_field(model)``; ``docs/models.md`` has every scale):

=================  ==========  ==============  ==============
model              parameters  FLOPs / out px  receptive field
=================  ==========  ==============  ==============
``resunet``        2,086,017   42.2 k          54
``resunet_small``  140,737     9.3 k           26
``unet``           1,925,025   280.2 k         14
=================  ==========  ==============  ==============

Examples
--------
>>> import torch
>>> model = create_model("resunet_small", in_channels=3, scale=4)
>>> model(torch.rand(1, 3, 37, 53)).shape
torch.Size([1, 1, 148, 212])
"""

from microsr.models import resunet, smlm, unet  # noqa: F401  (registers the built-in models)
from microsr.models.analysis import ModelCost, call_cropped, model_cost, receptive_field, takes_crop
from microsr.models.layers import to_channels_last
from microsr.models.registry import complete_arch, create_model, list_models, register_model

__all__ = [
    "ModelCost",
    "call_cropped",
    "complete_arch",
    "create_model",
    "list_models",
    "model_cost",
    "receptive_field",
    "register_model",
    "takes_crop",
    "to_channels_last",
]
