"""Training the zoo study's metanetworks past one process: DistributedDataParallel.

    torchrun --nproc_per_node=2 bench/zoo/study.py --tiny --out /tmp/zoo-ddp   # the study
    torchrun --nproc_per_node=2 bench/zoo/distributed.py                       # self-check

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`setup` joins the process
group: NCCL with one GPU per process (``cuda:LOCAL_RANK``) where CUDA is available, gloo
on the CPU otherwise. :func:`fit` is the study's training loop (Adam at a constant
learning rate, MSE on standardized targets or cross-entropy) with

* a ``DistributedSampler`` per epoch (``set_epoch``: one shared permutation, seeded by
  ``seed + epoch``; rank r takes positions ``r, r + W, r + 2W, ...``), and local batches
  of ``batch / W`` networks, so step k's local batches together are exactly positions
  ``[k * batch, (k + 1) * batch)`` of the permutation -- the global batch a single
  process with batch ``batch`` sees at step k;
* the model wrapped in ``DistributedDataParallel``, which averages gradients over ranks:
  with equal local batch sizes the average of the local mean losses' gradients is the
  gradient of the global mean loss, so every rank takes the single-process step (to
  rounding; the test checks 2 gloo processes against 1 to 1e-6 in float64);
* logging (one line per epoch, the loss averaged over ranks) on rank 0 only.

Exact agreement needs the zoo size divisible by ``W`` (else ``DistributedSampler`` pads
by repeating networks) and ``batch`` divisible by ``W``. A model's ``augment`` (random
group elements) draws from a generator seeded by ``seed`` and the rank, so augmented
runs differ from one process in their random draws, not in distribution.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from qgen.data import InMemoryWeights, collate

__all__ = ["cleanup", "fit", "is_rank0", "setup", "world_size"]


def world_size() -> int:
    """The number of processes training together (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_rank0() -> bool:
    """Whether this process logs and writes results."""
    return rank() == 0


def setup(
    init_method: str | None = None, world: int | None = None, rank_: int | None = None
) -> int:
    """Join the process group when launched with several processes; returns the world size.

    By default reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...)
    and does nothing for a single process. ``init_method``/``world``/``rank_`` give the
    group explicitly (e.g. ``file:///tmp/rendezvous`` from ``torch.multiprocessing.spawn``).
    """
    if dist.is_initialized():
        return dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    if world <= 1:
        return 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank_ or 0)))
    kwargs = (
        {}
        if init_method is None
        else {"init_method": init_method, "world_size": world, "rank": rank_}
    )
    dist.init_process_group(backend, **kwargs)
    return dist.get_world_size()


def cleanup() -> None:
    """Leave the process group: a barrier first, so no rank tears its connections down
    while another still talks over them (gloo aborts a peer that loses a live pair)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _device() -> torch.device:
    if world_size() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _to(x: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in x.items()}


def optimizer(
    model: nn.Module,
    steps: int,
    lr: float,
    schedule: str = "constant",
    warmup: float = 0.0,
    weight_decay: float = 0.0,
):
    """Adam (AdamW where ``weight_decay`` > 0) and a per-step learning-rate schedule:
    ``constant``, or ``cosine``: linear warmup over the first ``warmup`` fraction of the
    ``steps``, then cosine decay to 0 at the last step. Both training loops use it."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule {schedule!r}: expected 'constant' or 'cosine'")
    if weight_decay > 0:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    ramp = int(round(warmup * steps))

    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < ramp:
            return (step + 1) / ramp
        t = (step - ramp) / max(1, steps - ramp)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit(
    model: nn.Module,
    x: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    *,
    classes: int,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    desc: str = "",
    find_unused_parameters: bool = False,
    log: Callable[[str], None] = print,
    distributed: bool = True,
    schedule: str = "constant",
    warmup: float = 0.0,
    weight_decay: float = 0.0,
) -> nn.Module:
    """Train ``model`` on ``x = {tensor: [n, 1, *axes]}``, ``y`` (see the module doc);
    ``distributed=False`` trains in this process alone even inside a process group."""
    world, r = (world_size(), rank()) if distributed else (1, 0)
    if batch % world:
        raise ValueError(f"global batch {batch} is not divisible by {world} processes")
    n = len(y)
    device = _device() if distributed else torch.device("cpu")
    if classes == 0:
        mu, sd = y.mean(), y.std()
        y = (y - mu) / sd
    data = InMemoryWeights(x, y)
    sampler = DistributedSampler(data, num_replicas=world, rank=r, shuffle=True, seed=seed)
    loader = DataLoader(data, batch_size=batch // world, sampler=sampler, collate_fn=collate)
    model.to(device)
    net = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=find_unused_parameters
        )
    augment = getattr(model, "augment", None)
    gen = torch.Generator().manual_seed(seed * 1000 + r)
    steps = epochs * math.ceil(n / batch)
    opt, sched = optimizer(model, steps, lr, schedule, warmup, weight_decay)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        loss_sum, count = 0.0, 0
        for xb, yb in loader:
            if augment is not None:
                xb = augment(xb, gen)
            xb, yb = _to(xb, device), yb.to(device)
            out = net(xb)
            loss = F.mse_loss(out[:, 0], yb) if classes == 0 else F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum, count = loss_sum + float(loss.detach()) * len(yb), count + len(yb)
        total = torch.tensor([loss_sum, count], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(total)
        if r == 0 and steps >= 200:
            mean = float(total[0] / total[1])
            log(f"  {desc} epoch {epoch + 1}/{epochs}: loss {mean:.4f} ({world} processes)")
    return model.cpu()


# --------------------------------------------------------------------------------------
# A self-check: the same training on W processes and on one gives the same parameters.


def _check_job(seed: int = 0):
    """A small ReLU-MLP zoo and an equivariant metanetwork on it, float64."""
    import sys

    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent.parent)]  # metanets; generated/
    import metanets

    from generated import mlp_relu

    gen = torch.Generator().manual_seed(seed)
    sizes = {"x": 2, "h1": 5, "h2": 4, "h3": 3, "y": 2}
    n = 24
    x = {
        k: torch.randn(
            n, 1, *(sizes[a.rstrip("*")] for a in axes), generator=gen, dtype=torch.float64
        )
        for k, axes in mlp_relu.TENSORS.items()
    }
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    torch.manual_seed(seed)
    model = metanets.EquivariantMetaNet(mlp_relu, 1, 2, head="nonlinear", hidden=8).double()
    return model, x, y


def train_check(distributed: bool = True, epochs: int = 2, batch: int = 8):
    """Train :func:`_check_job`'s model with :func:`fit`; its parameters."""
    model, x, y = _check_job()
    fit(
        model, x, y, classes=0, epochs=epochs, batch=batch, lr=1e-2, seed=0, distributed=distributed
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def spawned_check(rank_: int, world: int, rendezvous: str, out: str) -> None:
    """``torch.multiprocessing.spawn`` target: join a gloo group through the (fresh,
    not yet existing) file ``rendezvous``, train, rank 0 saves."""
    setup(Path(rendezvous).resolve().as_uri(), world, rank_)
    try:
        params = train_check()
        if rank_ == 0:
            torch.save(params, out)
    finally:
        cleanup()


def max_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state_dicts' entries."""
    return max(float((a[k].cpu() - b[k].cpu()).abs().max()) for k in a)


def main() -> None:
    """Train the check job on this torchrun group, then (rank 0) alone; compare."""
    world = setup()
    params = train_check()
    first = is_rank0()
    cleanup()
    if first:
        alone = train_check(distributed=False)
        diff = max_difference(params, alone)
        print(f"{world} process(es) vs 1: max parameter difference {diff:.3g} (float64)")
        if diff > 1e-6:
            raise SystemExit("distributed training differs from one process")


if __name__ == "__main__":
    main()
