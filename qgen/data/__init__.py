"""Datasets of weight spaces for the generated layers (``qgen.data``).

Every dataset here yields ``(weights, target)`` with ``weights`` the generated layers'
input dict for ONE network, ``{tensor: Tensor[1, *axes]}`` (the channel dim first), and
:func:`collate` batches such items into ``{tensor: Tensor[batch, 1, *axes]}``: exactly
the layout :meth:`qgen.data.adapters.WeightSpace.to_weights` gives, so a
``DataLoader(dataset, collate_fn=collate)`` feeds ``EquivariantLayer`` directly.

Sources, one module each:

* :mod:`qgen.data.checkpoints`: a directory of torch state_dicts / safetensors files
  (a glob, targets from a metadata CSV), read lazily per item;
* :mod:`qgen.data.cnn_zoo`: the Small CNN Zoo (Unterthiner et al. 2020) as used by NFN
  and Neural Graphs: ``weights.npy`` memory-mapped, TF -> torch layouts, the step filter;
* :mod:`qgen.data.inr`: the DWSNets and NFN SIREN INR zoos (per-INR ``.pth`` files);
* :mod:`qgen.data.memory`: weights already in memory (the zoo study's tensors).

Around them: :mod:`qgen.data.collate` (batching), :mod:`qgen.data.transforms`
(augmentation by random group elements), :mod:`qgen.data.stats` (streaming per-tensor
statistics, plain facts for a normalizer to choose from).
"""

from qgen.data.chain import chain_space, chain_spec
from qgen.data.checkpoints import CheckpointDataset, load_state_dict
from qgen.data.cnn_zoo import SmallCNNZoo, nfn_split, tf_to_torch
from qgen.data.collate import collate
from qgen.data.inr import DWSNetsINRs, NFNSirens
from qgen.data.memory import InMemoryWeights
from qgen.data.stats import TensorStatistics, weight_statistics
from qgen.data.transforms import RandomGroupAction, Transformed

__all__ = [
    "CheckpointDataset",
    "DWSNetsINRs",
    "InMemoryWeights",
    "NFNSirens",
    "RandomGroupAction",
    "SmallCNNZoo",
    "TensorStatistics",
    "Transformed",
    "chain_space",
    "chain_spec",
    "collate",
    "load_state_dict",
    "nfn_split",
    "tf_to_torch",
    "weight_statistics",
]
