"""DDP training of the zoo study's metanetworks: 2 gloo processes on the CPU take the
same steps as 1 process on the same global batches (float64, to 1e-6)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench" / "zoo"))

import distributed  # noqa: E402


@pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed")
def test_two_gloo_processes_match_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    # a file rendezvous: no port to race for with other processes on the machine
    rendezvous = str(tmp_path / "rendezvous")
    mp.spawn(distributed.spawned_check, args=(2, rendezvous, str(out)), nprocs=2, join=True)
    two = torch.load(out)
    one = distributed.train_check(distributed=False)
    untrained = distributed._check_job()[0].state_dict()
    assert set(two) == set(one)
    assert distributed.max_difference(two, one) < 1e-6
    # and the training moved the parameters (the comparison is not between two no-ops)
    assert distributed.max_difference(one, untrained) > 1e-3


def test_fit_refuses_a_batch_that_does_not_split_evenly(monkeypatch):
    model, x, y = distributed._check_job()
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="global batch 8 is not divisible by 3"):
        distributed.fit(model, x, y, classes=0, epochs=1, batch=8, lr=1e-3, seed=0)
