# %% [markdown]
# # Your first equivariant layer
#
# This tutorial declares the weight space of a small ReLU network, counts its
# equivariant linear maps, builds the layers in memory and checks, with a random element
# of the symmetry group, that they are equivariant. It is executed every time the
# documentation is built, so every output below is what the current code prints.
#
# You can run it yourself: it is the plain Python script `docs/tutorials/first_layer.py`
# (the `# %%` lines separate its cells), so `python docs/tutorials/first_layer.py` from
# the repository root works too.

# %% [markdown]
# ## 1. Declare the weight space
#
# A spec lists the *index types* that the axes of the weights can carry and the
# *tensors* of the weight space. Here: an MLP with 2 inputs, two hidden ReLU layers and
# 1 output. Input and output neurons keep their order (a type without a group is a fixed
# axis and needs a size); each hidden layer's neurons can be permuted and positively
# rescaled (`group: scaled`, the symmetry of ReLU). An axis marked `*` is *dual*: it
# transforms by the inverse transpose, as the input index of a weight matrix does.

# %%
import torch

import qgen

SPEC = """
name: tiny_relu
types:
  x:  {size: 2}
  h1: {group: scaled}
  h2: {group: scaled}
  y:  {size: 1}
tensors:
  W1: [h1, x*]
  b1: [h1]
  W2: [h2, h1*]
  b2: [h2]
  W3: [y, h2*]
  b3: [y]
"""
spec = qgen.parse_spec(SPEC)
print([t.name for t in spec.tensors])

# %% [markdown]
# ## 2. Count the equivariant linear maps
#
# `qgen.solve` enumerates, block by block, the basis of linear maps `V_in -> V_out`
# that commute with the group (this is what `qgen count` prints). Counts are *generic*:
# they hold for every width from a threshold on, so the hidden sizes are not part of
# the spec.

# %%
basis = qgen.solve(spec)
counts = basis.counts()
print("equivariant maps:", counts["total"])
for out, row in counts["equivariant"].items():
    print(f"{out:>3} <- " + "  ".join(f"{src}:{n}" for src, n in row.items() if n))

# %% [markdown]
# Positive scalings forbid most terms: a map from `W2` to `W2` must keep every entry's
# scale factor `q_i / q_j`, so only the identity survives. With `group: perm` instead,
# the same network has many more maps, because pooling and broadcasting are allowed:

# %%
perm = qgen.parse_spec(SPEC.replace("scaled", "perm"))
print("perm:", qgen.solve(perm).counts()["total"])

# %% [markdown]
# ## 3. Build the layers
#
# `qgen.compile` generates the PyTorch module in memory (`qgen build` writes the same
# module to a file, which imports only torch). A layer takes a dict
# `{tensor: [batch, channels, *axes]}`; hidden widths are read from the input, so one
# layer serves networks of any width.

# %%
layers = qgen.compile(spec)
layer = layers.EquivariantLayer(in_channels=1, out_channels=4)

torch.manual_seed(0)
sizes = {"h1": 5, "h2": 3}  # this network's hidden widths
shapes = {"W1": (5, 2), "b1": (5,), "W2": (3, 5), "b2": (3,), "W3": (1, 3), "b3": (1,)}
x = {name: torch.randn(8, 1, *shape) for name, shape in shapes.items()}  # a batch of 8
y = layer(x)
print({name: tuple(t.shape) for name, t in y.items()})

# %% [markdown]
# ## 4. Check equivariance
#
# The module also generates the group: `sample_group_element` draws a random element
# (a permutation and positive scales per hidden type) and `act` applies it to a weight
# dict. Equivariance means that moving the input moves the output by the same element.

# %%
g = layers.sample_group_element(sizes, torch.Generator().manual_seed(1))
lhs = layer(layers.act(g, x))
rhs = layers.act(g, layer(x))
err = max(((lhs[k] - rhs[k]).abs().max() / rhs[k].abs().max()).item() for k in lhs)
print(f"largest relative deviation: {err:.1e}")
assert err < 1e-5

# %% [markdown]
# The moved network computes the same function as the original one, which is why a
# metanetwork should not care about the difference. An *invariant* head turns the
# layer's output into features that do not move at all:

# %%
head = layers.InvariantHead(in_channels=4, out_features=2)
print(head(y))
print(head(layers.act(g, y)))

# %% [markdown]
# ## Next
#
# * [Training a metanetwork on a zoo](../train_metanetwork/): the building blocks
#   between layers, on networks trained on real data.
# * [The spec format and group kinds](../../guide/spec/): every kind of symmetry.
# * [The generated module](../../guide/generated-module/): every class and function.
