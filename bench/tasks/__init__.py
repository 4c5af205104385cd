"""Three offline weight-space benchmarks in the field's style (issue 22).

* :mod:`bench.tasks.inr_classify`: INR classification from independent initializations.
* :mod:`bench.tasks.cnn_generalization`: generalization prediction on a small CNN zoo.
* :mod:`bench.tasks.inr_edit`: INR editing (dilation) with a weight-space output.

Shared pieces (zoo cache and manifests, SIREN fitting, the model table, the training loop
with validation selection, results JSON, tables and plots) are in :mod:`bench.tasks.common`.
"""
