"""Runtime building blocks of generated modules, as ordinary torch-only Python.

:mod:`qgen.runtime.blocks` holds the metanetwork pieces between equivariant layers
(activations, gates, normalizers, canonicalization, degree-2 products, the composed
``MetaNet``). They read per-spec tables (which tensor gets which rule) that
:mod:`qgen.codegen.blocks` computes at build time from the group kinds; qgen's tests import
them directly, and the builder copies the definitions a spec uses into its generated
module (:mod:`qgen.runtime.source`), so generated files still import torch alone.
Nothing here imports qgen.
"""
