"""Train a small invariant metanetwork with generated layers, in a few lines.

Task (synthetic, so it runs anywhere): predict the squared norm of a ReLU MLP's
output on fixed probe inputs from its weights. That quantity is invariant under
the MLP's weight-space group (hidden permutations and positive rescalings), so
an invariant metanetwork is the right tool.

    python examples/train_demo.py
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

import qgen

space = qgen.compile(Path(__file__).with_name("mlp_gelu.yaml"))  # or import generated/mlp_gelu.py
torch.manual_seed(0)
# Small tensors: one thread unless QGEN_THREADS says more (torch's default of a thread per
# core made a step 14x slower on a loaded 2-core machine: spinning threads wait for a core)
torch.set_num_threads(int(os.environ.get("QGEN_THREADS", "1")))


def random_networks(batch: int, h1: int = 8, h2: int = 8) -> dict[str, torch.Tensor]:
    shapes = {"W1": (h1, 4), "b1": (h1,), "W2": (h2, h1), "b2": (h2,), "W3": (3, h2), "b3": (3,)}
    return {k: torch.randn(batch, 1, *s) / s[-1] ** 0.5 for k, s in shapes.items()}


def target(w: dict[str, torch.Tensor]) -> torch.Tensor:
    probe = torch.linspace(-1, 1, 16 * 4).reshape(16, 4)
    h = nn.functional.gelu(probe @ w["W1"][:, 0].mT + w["b1"][:, 0, None])
    h = nn.functional.gelu(h @ w["W2"][:, 0].mT + w["b2"][:, 0, None])
    return (h @ w["W3"][:, 0].mT + w["b3"][:, 0, None]).square().mean(dim=(1, 2))


def metanetwork(channels: int = 16) -> nn.Module:
    """The generated MetaNetwork: layers, the nonlinearity the group allows for each tensor,
    channel norms and an invariant head; its input normalizer fitted on sample networks."""
    model = space.MetaNetwork(1, channels, 2, 1)
    model.fit_normalizer(random_networks(512))
    return model


def main(steps: int = 300) -> float:
    """Train for ``steps`` and return the test mean squared error."""
    model = metanetwork()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    test = random_networks(256)

    def test_mse() -> float:
        with torch.no_grad():
            return (model(test)[:, 0] - target(test)).square().mean().item()

    for step in range(1, steps + 1):
        batch = random_networks(64)
        loss = (model(batch)[:, 0] - target(batch)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step:4d}  train mse {loss.item():.4f}  test mse {test_mse():.4f}")
    baseline = (target(test) - target(test).mean()).square().mean().item()
    print(f"test mse {test_mse():.4f}; predicting the mean instead: {baseline:.4f}")
    return test_mse()


if __name__ == "__main__":
    main()
