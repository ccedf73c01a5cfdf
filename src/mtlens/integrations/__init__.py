"""Thin callbacks that feed a :class:`~mtlens.training.recorder.Recorder` from other training
libraries: :mod:`mtlens.integrations.lightning` (PyTorch Lightning, extra ``lightning``) and
:mod:`mtlens.integrations.huggingface` (Hugging Face ``transformers``, extra ``hf``).  Neither
library is imported by mtlens itself; import the module of the one you use."""
