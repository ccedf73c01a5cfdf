"""Experiments of the assumptions study (Elich et al.): the runs each one needs (:mod:`mtlens.experiments.plans`)."""
