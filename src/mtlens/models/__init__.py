"""Models: the multi-task model and every encoder.

* :mod:`mtlens.models.multitask` -- :class:`MultiTaskModel` (one shared encoder, one head per task)
  and :func:`build_model` (seeded, STL/MTL-comparable initialization).
* :mod:`mtlens.models.encoders` -- the small CNNs of the embedded and paper settings.
* :mod:`mtlens.models.resnet` -- one ResNet (basic and bottleneck blocks, stem, strides and dilations).
* :mod:`mtlens.models.deeplab` -- DeepLabV3's dilated ResNet encoder and ASPP head.
"""

from mtlens.models.multitask import MultiTaskModel, build_model

__all__ = ["MultiTaskModel", "build_model"]
