"""Metanetwork building blocks that respect a weight space's symmetry group (torch only).

Every block maps a weight-space dict ``{tensor: [batch, channels, *axes]}`` and is driven
by a table ``tables`` that :mod:`qgen.codegen.blocks` computes at build time from the group
kinds of each tensor's axes (see there for the mathematics of each rule):

* ``entry[t] = (norm_dims, divide, absolute, invariant_only)``: how an invariant of one
  entry (one index tuple, a vector over channels) is formed: the norm over ``norm_dims``
  (axes that an orthogonal action mixes), then division by the channel norm (positive
  factors), then evenness in the sign (sign factors); ``invariant_only``: no per-entry
  invariant exists (GL mixes), gates read whole-space invariants instead;
* ``activation[t]``: "any", "homogeneous", "odd" (the pointwise functions that commute
  with the action) or "gate";
* ``norm[t]``: the dims whose RMS (with channels) is invariant, or None;
* ``centre[t]``: the dims a constant may be subtracted over, or None;
* ``pool[t] = (pool_dims, width)``: dims averaged in the invariant head, features per
  hidden unit, or None;
* ``products``: ``(a, b, equation, targets)`` degree-2 terms ``einsum(equation, A, B)``
  averaged over the summed indices, transforming as each of ``targets`` (empty: invariant);
* ``canon``: steps ``(type, factor, incoming, outgoing, sign_sources)`` or None;
* ``gram``: ``(tensors, equation, entry, pool)`` Gram tensors ``einsum(equation, A, B,
  ...)`` of two or three tensors contracting every GL axis with its partner (no entry of
  a GL tensor is invariant, these contractions are), with the entry and pool rules of
  the result.
"""

from __future__ import annotations

import torch
from torch import nn

Weights = dict[str, torch.Tensor]

__all__ = [
    "Activation",
    "ChannelNorm",
    "GramPool",
    "InputNorm",
    "InputStatistics",
    "InvariantPool",
    "MetaNet",
    "Products",
    "canonicalize_with",
    "entry_invariant",
]


def _channel_mix(weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``weight [out, in]`` applied to the channels of ``v [batch, in, *axes]``."""
    flat = weight @ v.reshape(v.shape[0], v.shape[1], -1)
    return flat.reshape(v.shape[0], weight.shape[0], *v.shape[2:])


def _safe_norm(v: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``sqrt(sum of squares over dims)``, kept dims; clamped at ``tiny(dtype)`` before the
    root, so the gradient is finite (zero) at all-zero entries."""
    return v.square().sum(dims, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny).sqrt()


def entry_invariant(v: torch.Tensor, norm_dims: tuple[int, ...], divide: bool) -> torch.Tensor:
    """Per entry: the norm over ``norm_dims`` (invariant under orthogonal actions there),
    then with ``divide`` the entry divided by its norm over channels (invariant under a
    positive factor per entry). Odd in each entry's sign unless ``norm_dims``: callers make
    it even where signs act."""
    if norm_dims:
        v = _safe_norm(v, norm_dims)
    if divide:
        v = v / _safe_norm(v, (1,))
    return v


def _mean_einsum(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """``einsum(equation, *operands)`` divided by the sizes of the indices it sums over."""
    inputs, out = equation.split("->")
    count = 1
    seen = set()
    for letters, t in zip(inputs.split(","), operands, strict=True):
        for letter, size in zip(letters, t.shape, strict=True):
            if letter not in out and letter not in seen:
                seen.add(letter)
                count *= size
    return torch.einsum(equation, *operands) / count


#: the in-place forms of the pointwise functions that have one
_IN_PLACE = {"relu": torch.relu_, "tanh": torch.tanh_}


def _pointwise(name: str):
    """The pointwise function called ``name`` (for tensors where any one commutes)."""
    functions = {
        "relu": torch.relu,
        "gelu": nn.functional.gelu,
        "silu": nn.functional.silu,
        "tanh": torch.tanh,
    }
    if name not in functions:
        raise ValueError(f"activation {name!r}: use one of {sorted(functions)}")
    return functions[name]


class Activation(nn.Module):
    """The equivariant nonlinearity of every tensor (the rule its axes' kinds allow).

    * "any" (permutations only): ``activation`` pointwise (default ReLU);
    * "homogeneous" (positive factors): ReLU, since ``relu(q x) = q relu(x)`` for ``q > 0``;
    * "odd" (sign factors): tanh, since ``tanh(-x) = -tanh(x)``;
    * "gate" (any other combination, or ``gated=True`` for every tensor): ScaleEq
      ``(W v) * sigmoid(s)`` per entry ``v``, ``W`` a bias-free channel mix (it commutes
      with every factor), ``s = A u + c`` for the entry invariant ``u``
      (:func:`entry_invariant`), ``|A u| + c`` where signs act; for tensors with no
      per-entry invariant (GL), ``s = B z + c`` from the whole-space invariants ``z``
      (the degree-2 invariant products, per channel).
    """

    def __init__(
        self,
        channels: int,
        tables: dict,
        activation: str = "relu",
        gated: bool = False,
        reuse_input: bool = False,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.rules = {t: "gate" if gated else rule for t, rule in tables["activation"].items()}
        self.entry = tables["entry"]
        self.function = _pointwise(activation)
        #: apply the pointwise functions in place when no gradient is recorded (for
        #: callers that own their inputs, as MetaNet does with its layers' outputs)
        self.reuse_input = reuse_input
        self._in_place = _IN_PLACE.get(activation)
        #: the tensors whose outputs have no negative entry (ReLU)
        self.nonnegative = frozenset(
            t
            for t, rule in self.rules.items()
            if rule == "homogeneous" or (rule == "any" and activation == "relu")
        )
        gates = [t for t, rule in self.rules.items() if rule == "gate"]
        self.invariants = tuple(p for p in tables["products"] if not p[3])
        context = [t for t in gates if self.entry[t][3]]
        self.mix = nn.ParameterDict({t: nn.Parameter(torch.eye(channels)) for t in gates})
        self.bias = nn.ParameterDict({t: nn.Parameter(torch.zeros(channels)) for t in gates})
        self.gate = nn.ParameterDict(
            {
                t: nn.Parameter(torch.randn(channels, channels) / channels**0.5)
                for t in gates
                if not self.entry[t][3]
            }
        )
        width = channels * len(self.invariants)
        self.context = nn.ParameterDict(
            {
                t: nn.Parameter(torch.randn(channels, width) / max(width, 1) ** 0.5)
                for t in (context if width else [])
            }
        )

    def _context(self, x: Weights) -> torch.Tensor:
        feats = [_mean_einsum(eq, x[a], x[b]) for a, b, eq, _ in self.invariants]
        return torch.cat(feats, dim=1)

    def forward(self, x: Weights) -> Weights:
        z = self._context(x) if len(self.context) else None
        in_place = self.reuse_input and not torch.is_grad_enabled()
        out = {}
        for name, v in x.items():
            rule = self.rules[name]
            if rule == "any":
                function = self._in_place if in_place and self._in_place else self.function
                out[name] = function(v)
            elif rule == "homogeneous":
                out[name] = torch.relu_(v) if in_place else torch.relu(v)
            elif rule == "odd":
                out[name] = torch.tanh_(v) if in_place else torch.tanh(v)
            else:
                out[name] = self._gated(name, v, z)
        return out

    def _gated(self, name: str, v: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        norm_dims, divide, absolute, invariant_only = self.entry[name]
        shape = (1, self.channels) + (1,) * (v.dim() - 2)
        s = self.bias[name].reshape(shape)
        if not invariant_only:
            a = _channel_mix(self.gate[name], entry_invariant(v, norm_dims, divide))
            s = s + (a.abs() if absolute else a)
        elif z is not None and name in self.context:
            s = s + (z @ self.context[name].T).reshape(z.shape[0], self.channels, *shape[2:])
        return _channel_mix(self.mix[name], v) * torch.sigmoid(s)


class ChannelNorm(nn.Module):
    """``v / rms(v) * gain`` per tensor, the RMS over channels and the dims in
    ``tables["norm"]`` (those where every kind keeps norms: an invariant scalar per
    sample); tensors with a positively scaled or GL axis have no such invariant and pass
    unchanged. ``gain`` is one learnable number per channel (a channel mix commutes)."""

    def __init__(
        self, channels: int, tables: dict, eps: float = 1e-5, reuse_input: bool = False
    ) -> None:
        super().__init__()
        self.dims = {t: d for t, d in tables["norm"].items() if d is not None}
        self.eps = eps
        #: scale the input tensors in place when no gradient is recorded (for callers that
        #: own them, as MetaNet does with its activations' outputs)
        self.reuse_input = reuse_input
        self.gain = nn.ParameterDict({t: nn.Parameter(torch.ones(channels)) for t in self.dims})

    def forward(self, x: Weights) -> Weights:
        out = dict(x)
        for name, dims in self.dims.items():
            v = x[name]
            count = 1
            for d in dims:
                count *= v.shape[d]
            # the norm is a fused reduction; the per-sample scale is formed before the one
            # pass over v
            square = torch.linalg.vector_norm(v, dim=dims, keepdim=True).square() / count
            scale = (square + self.eps).rsqrt() * self.gain[name].reshape(
                1, -1, *[1] * (v.dim() - 2)
            )
            if self.reuse_input and not torch.is_grad_enabled():
                out[name] = v.mul_(scale)
            else:
                out[name] = v * scale
        return out


class InputNorm(nn.Module):
    """``(x - mean) / scale`` per tensor, fitted on a dataset by :meth:`fit` (identity
    before). ``scale`` is one number per tensor and channel (a constant commutes with every
    linear action); ``mean`` is subtracted only for tensors in ``tables["centre"]`` (all
    group axes pure permutations: a constant over them is invariant), one per channel and
    index of the remaining fixed axes."""

    def __init__(self, channels: int, tables: dict) -> None:
        super().__init__()
        self.centre = tables["centre"]
        for name, shape in tables["shapes"].items():  # fixed sizes; 1 on group axes
            self.register_buffer(f"scale_{name}", torch.ones(1, channels, *[1] * len(shape)))
            self.register_buffer(f"mean_{name}", torch.zeros(1, channels, *shape))

    @torch.no_grad()
    def fit(self, x: Weights) -> InputNorm:
        """Fit mean and scale to a dataset ``x`` (a weight-space dict, batch first)."""
        for name, v in x.items():
            dims = self.centre[name]
            if dims is not None:
                mean = v.mean((0, *dims), keepdim=True)
                getattr(self, f"mean_{name}").copy_(mean)
                v = v - mean
            rest = tuple(d for d in range(v.dim()) if d != 1)
            scale = v.square().mean(rest, keepdim=True).sqrt().clamp_min(1e-12)
            getattr(self, f"scale_{name}").copy_(scale)
        return self

    def forward(self, x: Weights) -> Weights:
        out = {}
        for name, v in x.items():
            inverse = 1 / getattr(self, f"scale_{name}")
            if self.centre[name] is not None:  # (v - mean) / scale in one pass over v
                out[name] = torch.addcmul(-getattr(self, f"mean_{name}") * inverse, v, inverse)
            else:
                out[name] = v * inverse
        return out


def canonicalize_with(x: Weights, steps: tuple) -> Weights:
    """ScaleGMN-style canonicalization: for each type with a factor per index, in order,
    divide out each index's factor from every tensor it acts on.

    Positive factors: the norm ``f_i`` of index ``i``'s incoming entries (every tensor where
    the type is a plain axis, over all other dims and channels) scales by ``q_i``; dividing
    the incoming axes by ``f_i`` and multiplying the outgoing (dual) ones leaves a weight
    space invariant under the scales. Signs: ``s_i = sign`` of the sum of incoming entries
    of ``sign_sources`` (odd in the flip), multiplied onto both. Steps come in an order in
    which every incoming tensor involves only types already canonical (or free of
    factors), so the result is invariant under all factors and equivariant under the rest.
    """
    x = dict(x)
    for _, factor, incoming, outgoing, sign_sources in steps:
        if factor == "positive":
            sq = 0
            for name, dim in incoming:
                v = x[name]
                sq = sq + v.square().sum(tuple(d for d in range(1, v.dim()) if d != dim))
            f = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()  # [batch, n]
            down, up = 1 / f, f
        else:
            s = 0
            for name, dim in sign_sources:
                v = x[name]
                s = s + v.sum(tuple(d for d in range(1, v.dim()) if d != dim))
            down = up = torch.where(s >= 0, 1.0, -1.0).to(next(iter(x.values())).dtype)
        for factor_, axes in ((down, incoming), (up, outgoing)):
            for name, dim in axes:
                v = x[name]
                shape = [v.shape[0]] + [1] * (v.dim() - 1)
                shape[dim] = v.shape[dim]
                x[name] = v * factor_.reshape(shape)
    return x


class Products(nn.Module):
    """Degree-2 equivariant terms: per product ``(a, b, equation, targets)``, the channels
    of ``A`` and ``B`` are mixed (``U A``, ``V B``, bias-free, ``out_channels`` each) and
    multiplied channel by channel by ``equation`` (contractions, shared indices, pooling:
    each allowed by the kinds, so the product transforms as every tensor in ``targets``),
    averaged over the summed indices, and added to each target with a gain per channel.
    ``forward`` returns the sums per target and the invariant products (empty ``targets``)
    ``[batch, out_channels * invariants]`` (None if there are none)."""

    def __init__(self, in_channels: int, out_channels: int, tables: dict) -> None:
        super().__init__()
        self.products = tuple(tables["products"])
        k = len(self.products)
        scale = in_channels**-0.5
        self.u = nn.Parameter(torch.randn(k, out_channels, in_channels) * scale)
        self.v = nn.Parameter(torch.randn(k, out_channels, in_channels) * scale)
        rows = sum(len(p[3]) for p in self.products)
        self.gain = nn.Parameter(torch.ones(rows, out_channels))

    def forward(self, x: Weights) -> tuple[Weights, torch.Tensor | None]:
        out: Weights = {}
        invariants = []
        row = 0
        for i, (a, b, equation, targets) in enumerate(self.products):
            p = _mean_einsum(equation, _channel_mix(self.u[i], x[a]), _channel_mix(self.v[i], x[b]))
            if not targets:
                invariants.append(p)
            for target in targets:
                g = self.gain[row].reshape(1, -1, *[1] * (p.dim() - 2))
                out[target] = out[target] + g * p if target in out else g * p
                row += 1
        return out, torch.cat(invariants, dim=1) if invariants else None


class InvariantPool(nn.Module):
    """Invariant features: per tensor with a rule in ``tables["pool"]``, the entry
    invariant ``u`` (:func:`entry_invariant`) averaged over the axes whose kinds only move
    entries (fixed axes kept): ``mean |u|`` and ``mean u`` (``mean u^2`` where signs act,
    so even) per channel; with ``hidden``, first embedded per entry by ``relu(E u + e)``
    (plus ``relu(-E u + e)`` where signs act), as in DeepSets. ``canonical``: the input is
    canonicalized (:func:`canonicalize_with`), its entries invariant as they are, so ``u``
    is the entry itself (its norm over orthogonal axes): magnitudes are kept, where
    ``x / |x|`` keeps only directions. ``[batch, features]``."""

    def __init__(
        self, in_channels: int, tables: dict, hidden: int | None = None, canonical: bool = False
    ) -> None:
        super().__init__()
        self.entry = tables["entry"]
        self.canonical = canonical
        self.pool = {t: rule for t, rule in tables["pool"].items() if rule is not None}
        self.hidden = hidden
        if hidden is not None:
            self.embed = nn.ModuleDict({t: nn.Linear(in_channels, hidden) for t in self.pool})
        width = hidden if hidden is not None else 2 * in_channels
        self.features = width * sum(w for _, w in self.pool.values())

    def forward(self, x: Weights, nonnegative: frozenset[str] = frozenset()) -> torch.Tensor:
        """``nonnegative``: tensors known to have no negative entry (after a ReLU), where
        ``mean |u|`` is ``mean u``: one pass over them instead of two (same features)."""
        feats = []
        for name, (pool_dims, _) in self.pool.items():
            norm_dims, divide, absolute, _ = self.entry[name]
            if self.canonical:  # factors already divided out: entries are invariant
                divide = absolute = False
            u = entry_invariant(x[name], norm_dims, divide)
            if self.hidden is not None:
                u = u.movedim(1, -1)
                h = torch.relu(self.embed[name](u))
                if absolute:
                    h = h + torch.relu(self.embed[name](-u))
                dims = tuple(d - 1 for d in pool_dims)
                h = h.mean(dims) if dims else h
            elif pool_dims:  # fused reductions, no |u| or u^2 materialized
                count = 1
                for d in pool_dims:
                    count *= u.shape[d]
                if name in nonnegative and not absolute:  # |u| = u: the two means agree
                    first = u.mean(pool_dims)
                    feats.append(torch.cat([first, first], dim=1).flatten(1))
                    continue
                first = torch.linalg.vector_norm(u, 1, dim=pool_dims) / count
                if absolute:
                    second = torch.linalg.vector_norm(u, 2, dim=pool_dims).square() / count
                else:
                    second = u.mean(pool_dims)
                h = torch.cat([first, second], dim=1)
            else:
                h = torch.cat([u.abs(), u.square() if absolute else u], dim=1)
            feats.append(h.flatten(1))
        return torch.cat(feats, dim=1)


#: the quantiles of a tensor's entries in :class:`InputStatistics` (StatNN's five)
STAT_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _quantiles(v: torch.Tensor) -> torch.Tensor:
    """:data:`STAT_QUANTILES` of ``v [..., n]`` along the last dim, linearly interpolated
    as ``torch.quantile`` does, from one sort (``torch.quantile`` refuses inputs of more
    than 2**24 entries, a batch of large networks)."""
    s = v.sort(dim=-1).values
    n = v.shape[-1]
    out = []
    for q in STAT_QUANTILES:
        position = q * (n - 1)
        lo = int(position)
        hi = min(lo + 1, n - 1)
        w = position - lo
        out.append(s[..., lo] * (1 - w) + s[..., hi] * w)
    return torch.stack(out, dim=-1)


class InputStatistics(nn.Module):
    """StatNN's features (Unterthiner et al. 2020), kept invariant: per input tensor and
    channel, the mean, the standard deviation and the quantiles :data:`STAT_QUANTILES`
    of its entries, standardized by statistics fitted on a dataset (:meth:`fit`).

    A symmetric function of the multiset of a tensor's entries is invariant wherever the
    group only moves entries. Tensors whose entries are also multiplied by a factor are
    read canonicalized (``canonical=True``: the caller passes :func:`canonicalize_with` of
    the input, its entries then only moved), else by their absolute values where the
    factor is a sign, and skipped where it is positive; an orthogonal axis is replaced by
    the norm over it (the entry invariant); tensors with no per-entry invariant (a GL
    axis) are skipped. ``[batch, features]``."""

    def __init__(self, channels: int, tables: dict, canonical: bool = False) -> None:
        super().__init__()
        self.rules = {}
        for name, (norm_dims, divide, absolute, invariant_only) in tables["entry"].items():
            if invariant_only or (divide and not canonical):
                continue
            self.rules[name] = (tuple(norm_dims), absolute and not canonical)
        self.features = channels * (2 + len(STAT_QUANTILES)) * len(self.rules)
        self.register_buffer("mean", torch.zeros(self.features))
        self.register_buffer("std", torch.ones(self.features))

    def raw(self, x: Weights) -> torch.Tensor:
        """The statistics before standardization."""
        feats = []
        for name, (norm_dims, absolute) in self.rules.items():
            v = x[name]
            if norm_dims:
                v = _safe_norm(v, norm_dims)
            if absolute:
                v = v.abs()
            v = v.flatten(2)  # [batch, channels, entries]
            quantiles = _quantiles(v)  # [batch, channels, q]
            moments = [v.mean(2, keepdim=True), v.std(2, correction=0, keepdim=True)]
            feats.append(torch.cat([*moments, quantiles], dim=2).flatten(1))
        return torch.cat(feats, dim=1)

    @torch.no_grad()
    def fit(self, x: Weights) -> InputStatistics:
        """Fit the standardization (mean and standard deviation of every feature)."""
        if self.features:
            f = self.raw(x)
            self.mean.copy_(f.mean(0))
            self.std.copy_(f.std(0).clamp_min(1e-6))
        return self

    def forward(self, x: Weights) -> torch.Tensor:
        return (self.raw(x) - self.mean) / self.std


class GramPool(nn.Module):
    """Invariant features of the Gram tensors (``tables["gram"]``): per product of two or
    three tensors, each is channel-mixed (one bias-free mix per tensor and place in the
    product: a channel mix commutes with the group), they are contracted channel by
    channel over every GL axis (averaged over the summed indices), and the result, whose
    entries are only moved and multiplied by factors (or mixed by norm-keeping actions),
    is pooled as a tensor's entries are (:class:`InvariantPool`, ``hidden`` as there).
    ``[batch, features]``.

    On spaces with GL types (a residual stream without normalization, attention's
    per-head query/key and value/output bases, a linear chain) these are what an invariant
    head can read of the GL tensors: ``Wq_h^T Wk_h`` and ``Wo_h Wv_h`` per head,
    ``W_out W_in`` and ``W_a W_in`` along a stream, ``A3 A2 A1``. A Gram tensor keeps the
    free axes of its factors, so it costs the product of their sizes (``heads *
    d_model^2`` for ``Wq_h^T Wk_h``)."""

    def __init__(self, in_channels: int, tables: dict, hidden: int | None = None) -> None:
        super().__init__()
        self.gram = tuple(tables["gram"])
        self.names = tuple(",".join(g[0]) for g in self.gram)
        places = sorted({f"{t}@{k}" for g in self.gram for k, t in enumerate(g[0])})
        scale = in_channels**-0.5
        self.mix = nn.ParameterDict(
            {p: nn.Parameter(torch.randn(in_channels, in_channels) * scale) for p in places}
        )
        rules = {
            "entry": {n: g[2] for n, g in zip(self.names, self.gram, strict=True)},
            "pool": {n: g[3] for n, g in zip(self.names, self.gram, strict=True)},
        }
        self.pool = InvariantPool(in_channels, rules, hidden)
        self.features = self.pool.features

    def tensors(self, x: Weights) -> Weights:
        """The Gram tensors ``{"A,B": [batch, channels, *free axes]}``."""
        mixed = {p: _channel_mix(w, x[p.partition("@")[0]]) for p, w in self.mix.items()}
        return {
            n: _mean_einsum(eq, *(mixed[f"{t}@{k}"] for k, t in enumerate(tensors)))
            for n, (tensors, eq, _, _) in zip(self.names, self.gram, strict=True)
        }

    def forward(self, x: Weights) -> torch.Tensor:
        return self.pool(self.tensors(x))


#: the default width of the entry embedding before pooling in :class:`MetaNet`'s head
POOL_HIDDEN = 32


class MetaNet(nn.Module):
    """``depth`` blocks ``layer -> (+ degree-2 products) -> activation``, a channel norm
    between consecutive layers, after a fitted input normalizer (and optional
    canonicalization), then either an invariant head (:class:`InvariantPool`, the linear
    invariant head, the invariant degree-2 products, an MLP) or a last equivariant layer
    to ``out_features`` channels.

    ``pool_hidden`` (default :data:`POOL_HIDDEN`): each entry invariant is embedded by
    ``relu(E u + e)`` into that many features before the mean over the group axes
    (DeepSets, :class:`InvariantPool`); None: the pooled statistics ``mean |u|``, ``mean
    u`` instead (cheaper; they learned less in ``bench/metanet_learn``).
    ``head_canonical`` (default: wherever the space has factors and a canonicalization):
    the head pools the canonicalized features (equivariant features transform as the
    weight space does, channel by channel).
    ``gram`` (default: wherever ``tables["gram"]`` has pairs): the head also pools the Gram
    tensors (:class:`GramPool`, statistics), the only invariants it has of tensors with a
    GL axis.
    ``head_norm``: BatchNorm on the head's invariant features (any normalization of
    invariant features keeps the output invariant).
    ``stats`` (default True; invariant output only): the head also reads StatNN's
    statistics of the input tensors (:class:`InputStatistics`: mean, standard deviation,
    quantiles per tensor and channel, of the canonicalized input where the space has a
    canonicalization), standardized on the dataset given to :meth:`fit_normalizer`.
    ``canonicalize`` (default: True for an invariant output on a space with positive
    factors and a canonicalization, else False): the layers read :func:`canonicalize_with`
    of the input (exactly invariant under the factors; on the CNN zoo of
    ``bench/tasks`` the scaled layers went from validation tau 0.48 to 0.63 with it).
    ``canonical_space`` (with ``canonicalize=True`` only): a generated module of the same
    tensors for the group left once the factors are divided out (the ``group: perm``
    build of this spec); its ``EquivariantLayer``, ``InvariantHead`` and block tables
    replace this module's after canonicalization. The canonical weights are invariant
    under the factors, so the output stays exactly invariant under the whole group while
    the layers have every term the permutations allow (a scaled layer forbids most of
    them).
    ``layer(in, out, quasi=..., device=..., dtype=...)`` and ``linear_head(in, out, ...)``
    are the generated ``EquivariantLayer`` and ``InvariantHead`` (None where the space has
    no invariant linear functional). ``device``/``dtype``: where and in which dtype the
    parameters are made (the layers' escnn bases stay float64, as built).
    """

    def __init__(
        self,
        tables: dict,
        layer,
        linear_head,
        in_channels: int,
        hidden: int,
        depth: int,
        out_features: int,
        *,
        output: str = "invariant",
        degree2: bool = False,
        activation: str = "relu",
        gated: bool = False,
        norm: bool = True,
        canonicalize: bool | None = None,
        quasi: bool = False,
        head_hidden: int = 64,
        pool_hidden: int | None = POOL_HIDDEN,
        head_canonical: bool | None = None,
        gram: bool | None = None,
        head_norm: bool = False,
        stats: bool = True,
        canonical_space=None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        if output not in ("invariant", "equivariant"):
            raise ValueError(f"output={output!r}: use 'invariant' or 'equivariant'")
        if depth < 1:
            raise ValueError(f"depth={depth}: a MetaNetwork needs at least one layer")
        if canonicalize is None:  # the default: where positive factors can be divided out
            positive = any(step[1] == "positive" for step in tables["canon"] or ())
            canonicalize = output == "invariant" and (positive or canonical_space is not None)
        if canonicalize and tables["canon"] is None:
            raise ValueError(f"canonicalize=True: {tables['canon_problem']}")
        if canonicalize and output == "equivariant":
            raise ValueError(
                "canonicalize=True with output='equivariant': a canonicalized weight space is "
                "invariant under the factors, so the output would not be equivariant"
            )
        self.tables = tables
        self.canonicalize = canonicalize
        if canonical_space is not None:
            if not canonicalize:
                raise ValueError(
                    "canonical_space needs canonicalize=True: its layers are equivariant "
                    "under the group left after canonicalization only"
                )
            inner = canonical_space.BLOCK_TABLES
            if inner["shapes"] != tables["shapes"]:
                raise ValueError(
                    f"canonical_space: tensors {inner['shapes']} are not this space's "
                    f"{tables['shapes']}"
                )
            tables = inner
            layer = canonical_space.EquivariantLayer
            counts = canonical_space.INVARIANT_COUNTS
            linear_head = canonical_space.InvariantHead if sum(counts.values()) else None
        #: the block tables of the layers (``canonical_space``'s, else this space's)
        self.inner_tables = tables
        if degree2 and not tables["products"]:
            raise ValueError(f"degree2=True: no degree-2 products ({tables['products_problem']})")
        self.output = output
        self.normalizer = InputNorm(in_channels, tables).to(**factory)
        widths = [in_channels] + [hidden] * depth
        pairs = list(zip(widths, widths[1:], strict=False))
        self.layers = nn.ModuleList(layer(a, b, quasi=quasi, **factory) for a, b in pairs)
        self.products = (
            nn.ModuleList(Products(a, b, tables) for a, b in pairs).to(**factory)
            if degree2
            else None
        )
        self.activations = nn.ModuleList(
            Activation(hidden, tables, activation, gated, reuse_input=True) for _ in pairs
        ).to(**factory)
        # channel norms between layers: after every block a layer follows (the last block
        # feeds the head directly when the output is invariant)
        between = len(pairs) if output == "equivariant" else len(pairs) - 1
        self.norms = nn.ModuleList(
            ChannelNorm(hidden, tables, reuse_input=True) for _ in range(between)
        ).to(**factory)
        self.norms = self.norms if norm else None
        if output == "equivariant":
            self.out = layer(hidden, out_features, quasi=quasi, **factory)
            return
        if head_canonical is None:  # canonical weights give invariant features already
            head_canonical = bool(tables["canon"]) and canonical_space is None
        if head_canonical and not tables["canon"]:
            raise ValueError(f"head_canonical=True: {tables['canon_problem'] or 'no factors'}")
        self.head_canonical = head_canonical
        self.pool = InvariantPool(hidden, tables, pool_hidden, canonical=head_canonical).to(
            **factory
        )
        features = self.pool.features
        self.linear_head = (
            linear_head(hidden, head_hidden, **factory) if linear_head is not None else None
        )
        features += head_hidden if self.linear_head is not None else 0
        invariant = sum(not p[3] for p in tables["products"])
        self.head_products = (
            Products(hidden, hidden, tables).to(**factory) if degree2 and invariant else None
        )
        features += hidden * invariant if self.head_products is not None else 0
        if gram is None:
            gram = bool(tables["gram"])
        if gram and not tables["gram"]:
            raise ValueError("gram=True: no pair of tensors contracts every GL axis")
        # pooled statistics of the Gram tensors (embedding their entries learned slower)
        self.gram = GramPool(hidden, tables).to(**factory) if gram else None
        features += self.gram.features if self.gram is not None else 0
        # StatNN's statistics of the input: of the canonicalized input wherever this space
        # has a canonicalization (the raw input's entries are multiplied by the factors)
        statistics = InputStatistics(in_channels, self.tables, self.tables["canon"] is not None)
        self.stats = statistics.to(**factory) if stats and statistics.features else None
        features += self.stats.features if self.stats is not None else 0
        if not features:
            raise ValueError(
                "output='invariant': these blocks compute no invariant of this weight space "
                "(no linear invariant, no pooled entry invariant, no degree-2 invariant; "
                "try degree2=True, or output='equivariant')"
            )
        # the head's features are invariant: any normalization of them keeps the output
        # invariant (BatchNorm: batch statistics in training, running ones in eval mode)
        self.head_norm = nn.BatchNorm1d(features, **factory) if head_norm else None
        self.mlp = nn.Sequential(
            nn.Linear(features, head_hidden, **factory),
            nn.ReLU(),
            nn.Linear(head_hidden, out_features, **factory),
        )

    def fit_normalizer(self, x: Weights) -> MetaNet:
        """Fit the input normalizer on a dataset (canonicalized first if that is on), and the
        standardization of the input statistics (``stats``)."""
        canonical = self.tables["canon"] is not None
        c = canonicalize_with(x, self.tables["canon"]) if canonical else x
        self.normalizer.fit(c if self.canonicalize else x)
        if getattr(self, "stats", None) is not None:
            self.stats.fit(c)
        return self

    def features(self, x: Weights, canonical: bool = False) -> Weights:
        """The weight-space features after the last block (``canonical``: ``x`` is
        canonicalized already)."""
        if self.canonicalize and not canonical:
            x = canonicalize_with(x, self.tables["canon"])
        x = self.normalizer(x)
        for i, layer in enumerate(self.layers):
            y = layer(x)
            if self.products is not None:
                for name, p in self.products[i](x)[0].items():
                    y[name] = y[name] + p
            y = self.activations[i](y)
            x = self.norms[i](y) if self.norms is not None and i < len(self.norms) else y
        return x

    def forward(self, x: Weights):
        if self.output == "equivariant":
            return self.out(self.features(x))
        stats = []
        if self.canonicalize:
            x = canonicalize_with(x, self.tables["canon"])
        if self.stats is not None:
            canon = self.tables["canon"]
            c = x if self.canonicalize or canon is None else canonicalize_with(x, canon)
            stats.append(self.stats(c))
        x = self.features(x, canonical=True)
        pooled = canonicalize_with(x, self.tables["canon"]) if self.head_canonical else x
        nonnegative = self.activations[-1].nonnegative
        feats = [self.pool(pooled, nonnegative)] if self.pool.features else []
        if self.linear_head is not None:
            feats.append(self.linear_head(x))
        if self.head_products is not None:
            feats.append(self.head_products(x)[1])
        if self.gram is not None:
            feats.append(self.gram(x))
        z = torch.cat(feats + stats, dim=1)
        return self.mlp(self.head_norm(z) if self.head_norm is not None else z)
