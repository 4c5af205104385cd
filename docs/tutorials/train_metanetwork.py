# %% [markdown]
# # Training a metanetwork on a zoo
#
# A *model zoo* is a collection of trained networks; a metanetwork reads their weights.
# Here we train a small zoo of ReLU classifiers on scikit-learn's 8x8 digits, then train
# the generated `MetaNetwork` to predict each classifier's test accuracy from its
# weights alone, and check that its prediction does not change when a classifier's
# hidden neurons are permuted and rescaled (which leaves its function unchanged).
#
# Everything is kept tiny so that the tutorial runs in seconds at every docs build; the
# study with 2,000 classifiers and its results are on the
# [real-task results](../../guide/results/) page. This page is the script
# `docs/tutorials/train_metanetwork.py`, executed when the docs are built.

# %% [markdown]
# ## 1. A zoo of classifiers
#
# 192 MLPs 64-12-12-10, trained together in one batched program: each gets its own
# learning rate, number of steps and initialization scale, so their test accuracies
# spread out. The weights are stored in the layout the generated layers read,
# `{tensor: [networks, 1, *axes]}` (one channel), with torch's `[out, in]` matrices.

# %%
import torch
from sklearn.datasets import load_digits

torch.set_num_threads(1)  # the tensors are tiny: one thread is fastest
torch.manual_seed(0)
images, labels = load_digits(return_X_y=True)
images = torch.tensor(images, dtype=torch.float32) / 16
labels = torch.tensor(labels)
train_x, train_y, test_x, test_y = images[:1000], labels[:1000], images[1000:], labels[1000:]

N, widths = 192, [64, 12, 12, 10]
scale = torch.empty(N, 1, 1).uniform_(0.3, 2.0)
w = {}
for i, (n_in, n_out) in enumerate(zip(widths, widths[1:], strict=False), start=1):
    w[f"W{i}"] = (torch.randn(N, n_out, n_in) * scale / n_in**0.5).requires_grad_()
    w[f"b{i}"] = torch.zeros(N, n_out, requires_grad=True)


def forward(w, x):  # every network of the zoo on the same inputs: [N, batch, 10]
    h = x.expand(len(w["W1"]), -1, -1)
    for i in (1, 2, 3):
        h = h @ w[f"W{i}"].mT + w[f"b{i}"][:, None]
        h = torch.relu(h) if i < 3 else h
    return h


lr = 10 ** torch.empty(N).uniform_(-1.5, 0)
steps = torch.randint(5, 120, (N,))
for step in range(120):
    batch = torch.randint(0, 1000, (64,))
    loss = (
        torch.nn.functional.cross_entropy(
            forward(w, train_x[batch]).flatten(0, 1), train_y[batch].repeat(N), reduction="sum"
        )
        / 64
    )
    grads = torch.autograd.grad(loss, list(w.values()))
    with torch.no_grad():
        for p, g in zip(w.values(), grads, strict=True):
            p -= (lr * (step < steps)).view(-1, *[1] * (p.dim() - 1)) * g

with torch.no_grad():
    accuracy = (forward(w, test_x).argmax(-1) == test_y).float().mean(1)
    zoo = {k: v.detach().unsqueeze(1) for k, v in w.items()}  # [N, 1, *axes]
low, mid, high = accuracy.min(), accuracy.median(), accuracy.max()
print(f"test accuracy of the zoo: min {low:.2f}, median {mid:.2f}, max {high:.2f}")
print({k: tuple(v.shape) for k, v in zoo.items()})

# %% [markdown]
# ## 2. The weight space and its layers
#
# The `arch: mlp` preset writes the spec of this chain of layers; `activation: relu`
# gives the hidden neurons the group of positive rescalings with permutations
# (`scaled`). Swap in `gelu` and they get permutations only.

# %%
import qgen

spec = qgen.parse_spec("""
name: digits_mlp
arch: mlp
widths: [64, 12, 12, 10]
activation: relu
""")
layers = qgen.compile(spec)
print(layers.TYPES)

# %% [markdown]
# ## 3. Data loaders
#
# `qgen.data` wraps weights in torch Datasets whose items are one network's weights and
# its target; `collate` batches them back into `{tensor: [batch, 1, *axes]}`. The same
# loaders read checkpoints on disk and the published zoos (see
# [data loaders](../../guide/data/)).

# %%
from torch.utils.data import DataLoader

from qgen.data import InMemoryWeights, collate

target = (accuracy - accuracy.mean()) / accuracy.std()
train_idx, test_idx = torch.arange(144), torch.arange(144, N)


def subset(idx):
    return InMemoryWeights({k: v[idx] for k, v in zoo.items()}, target[idx])


loader = DataLoader(subset(train_idx), batch_size=32, shuffle=True, collate_fn=collate)
x, y = next(iter(loader))
print({k: tuple(v.shape) for k, v in x.items()}, tuple(y.shape))

# %% [markdown]
# ## 4. The metanetwork
#
# `MetaNetwork(in_channels, hidden, depth, out_features)` stacks equivariant layers with
# the nonlinearities and norms this group allows, then an invariant head. With
# `canonicalize=True` it first divides every hidden neuron's incoming weights by their
# norm (and multiplies its outgoing weights), which makes the whole model exactly
# invariant to the rescalings.

# %%
torch.manual_seed(0)
net = layers.MetaNetwork(1, 8, 2, 1, canonicalize=True)
net.fit_normalizer(subset(train_idx).x)
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for _epoch in range(12):
    for x, y in loader:
        loss = (net(x)[:, 0] - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
print(f"last training batch MSE: {loss.item():.3f}")

# %% [markdown]
# ## 5. Evaluate: rank correlation with the true accuracy
#
# Kendall's tau counts how often the predicted order of two classifiers agrees with
# their true order (1: always, 0: chance).


# %%
def kendall_tau(a, b):
    i, j = torch.triu_indices(len(a), len(a), 1)
    return ((a[i] - a[j]).sign() * (b[i] - b[j]).sign()).mean().item()


test = {k: v[test_idx] for k, v in zoo.items()}
net.eval()
with torch.no_grad():
    pred = net(test)[:, 0]
print(
    f"Kendall tau on {len(test_idx)} held-out classifiers: "
    f"{kendall_tau(pred, accuracy[test_idx]):.2f}"
)

# %% [markdown]
# ## 6. Invariance
#
# Move every test classifier by a random element of its group: a permutation of each
# hidden layer's neurons and a positive factor per neuron (the sampler draws `exp(u)`
# with `u ~ U(-1, 1)`; cubed here, so the factors range over about 1/20 to 20). The
# moved classifiers compute the same functions (up to float32 rounding), and the
# metanetwork's predictions stay the same.

# %%
sizes = {"h1": 12, "h2": 12}
g = layers.sample_group_element(sizes, torch.Generator().manual_seed(1))
g = {t: (perm, scale.log().mul(3).exp()) for t, (perm, scale) in g.items()}
moved = layers.act(g, test)
with torch.no_grad():
    logits = forward({k: v[:, 0] for k, v in test.items()}, test_x)
    logits_moved = forward({k: v[:, 0] for k, v in moved.items()}, test_x)
    pred_moved = net(moved)[:, 0]
change = ((logits_moved - logits).abs().max() / logits.abs().max()).item()
print(f"largest relative change of a classifier's logits: {change:.1e}")
print(f"largest change of a prediction: {(pred_moved - pred).abs().max():.1e}")
