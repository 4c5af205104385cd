"""Group elements of weight-space symmetry groups: sampling, action, product, inverse.

An element of a type's group is stored per kind of action:

* ``monomial`` (perm, signed, scaled): a pair ``(index, scale)``, the matrix
  ``M[i, index[i]] = scale[i]``; it acts along an axis by ``(g.t)[i] = scale[i] t[index[i]]``
  and on a dual axis by ``M^-T``, i.e. with ``1 / scale``;
* ``matrix`` (gl, orthogonal, escnn representations): a float64 matrix ``A`` acting by
  ``A`` on a plain axis and ``A^-T`` on a dual one.

Both may carry leading batch dims (one element per sample). A nested type (wreath product,
e.g. per-head GL in attention) holds one element per index of its outer type, stacked
along a leading outer dim. Every element is float64 and is cast to the data's dtype where
it acts. Generated modules copy what they use from here (torch only).
"""

from __future__ import annotations

import torch

Monomial = tuple[torch.Tensor, torch.Tensor]


def _random_orthogonal(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of R fixed."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _sample_perm(n: int, generator: torch.Generator | None) -> Monomial:
    """A uniformly random permutation of ``n`` indices (every scale 1)."""
    return torch.randperm(n, generator=generator), torch.ones(n, dtype=torch.float64)


def _sample_signed(n: int, generator: torch.Generator | None) -> Monomial:
    """A uniformly random signed permutation: a permutation and a sign +-1 per index."""
    signs = torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1
    return torch.randperm(n, generator=generator), signs


def _sample_scaled(n: int, generator: torch.Generator | None) -> Monomial:
    """A random permutation with a positive scale ``exp(u)``, ``u ~ U(-1, 1)``, per index."""
    u = torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1
    return torch.randperm(n, generator=generator), u.exp()


def _sample_gl(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """A random invertible ``Q1 diag(exp(u)) Q2``, ``u ~ U(-1/2, 1/2)``: condition number <= e.

    ``Q1``, ``Q2`` are Haar-random orthogonal, so both signs of the determinant occur.
    """
    u = torch.rand(n, generator=generator, dtype=torch.float64) - 0.5
    return _random_orthogonal(n, generator) @ torch.diag(u.exp()) @ _random_orthogonal(n, generator)


def _sample_orthogonal(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """A Haar-random element of O(n) (either determinant)."""
    return _random_orthogonal(n, generator)


def _sparse(shape: tuple[int, ...], text: str) -> torch.Tensor:
    """A float64 tensor from exact text: one entry of the leading dim per ``;``-separated
    row, each row its nonzero entries ``flat`` (value 1) or ``flat:value`` (an integer,
    ``n/d``, or a float) at flat positions of the remaining dims."""
    out = torch.zeros(shape, dtype=torch.float64)
    flat = out.flatten(1)  # a view
    for r, row in enumerate(text.split(";") if shape[0] else []):
        for entry in row.split():
            index, _, value = entry.partition(":")
            num, _, den = value.partition("/")
            flat[r, int(index)] = (int(num) / int(den) if den else float(num)) if value else 1.0
    return out


def _planar_rep(angle: torch.Tensor, flip: int, irreps: list[tuple[int, int]]) -> torch.Tensor:
    """escnn's O(2) irreps ``(j, k)`` at rotation ``angle`` (after reflection ``flip``),
    block diagonal: ``(0, 0)`` trivial, ``(1, 0)`` the sign, ``(1, k)`` the rotation by
    ``k * angle`` times ``diag(1, -1) ** flip`` (SO(2): flip 0)."""
    blocks = []
    for j, k in irreps:
        if k == 0:
            blocks.append(torch.full((1, 1), float((-1) ** (j * flip)), dtype=torch.float64))
            continue
        c, s = torch.cos(k * angle), torch.sin(k * angle)
        r = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
        blocks.append(r * torch.tensor([1.0, -1.0 if flip else 1.0], dtype=torch.float64))
    return torch.block_diag(*blocks)


def _spatial_rep(q: torch.Tensor, summands: list[str]) -> torch.Tensor:
    """Block diagonal: ``q`` itself for each standard summand, 1 for each trivial one."""
    one = torch.ones(1, 1, dtype=torch.float64)
    return torch.block_diag(*[q if s == "standard" else one for s in summands])


def _sample_table(elements: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A uniformly random element of a finite group: a row of ``elements`` (every element
    as its exact matrix)."""
    return elements[int(torch.randint(len(elements), (), generator=generator))].clone()


def _sample_planar(
    irreps: list[tuple[int, int]], reflections: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """A random element of SO(2) (uniform angle) or, with ``reflections``, of O(2) (either
    reflection too), as the block-diagonal matrix of escnn's ``irreps`` (``_planar_rep``)."""
    angle = torch.rand((), generator=generator, dtype=torch.float64) * (2 * torch.pi)
    flip = int(torch.randint(2, (), generator=generator)) if reflections else 0
    return _planar_rep(angle, flip, irreps)


def _sample_spatial(
    summands: list[str], proper: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """A Haar-random element of O(3) (SO(3) when ``proper``) on standard and trivial
    ``summands`` (``_spatial_rep``)."""
    q = _random_orthogonal(3, generator)
    if proper:
        q = q * torch.linalg.det(q)  # det(-q) = -det(q) in 3 dimensions: into SO(3)
    return _spatial_rep(q, summands)


def _per_outer(sample, outer: int, n: int, generator: torch.Generator | None):
    """One element per index of the outer type, stacked along a leading outer dim."""
    parts = [sample(n, generator) for _ in range(outer)]
    if isinstance(parts[0], tuple):
        return tuple(torch.stack(p) for p in zip(*parts, strict=True))
    return torch.stack(parts)


def _along(v: torch.Tensor, t: torch.Tensor, dim: int) -> torch.Tensor:
    """``v`` of shape ``[*lead, n]`` viewed to broadcast against ``t`` along ``dim``.

    ``lead`` is empty (one element for the whole batch) or ``t``'s leading batch dims.
    """
    shape = [*v.shape[:-1], *[1] * (t.dim() - v.dim() + 1)]
    shape[dim] = v.shape[-1]
    return v.reshape(shape)


def _act_monomial(t: torch.Tensor, dim: int, g: Monomial, dual: bool) -> torch.Tensor:
    """``(g.t)[i] = scale[i] * t[index[i]]`` along ``dim``; ``1 / scale`` on a dual axis.

    ``scale`` may carry leading batch dims (one element per sample).
    """
    index, scale = g
    scale = scale.to(device=t.device)
    if dual:
        scale = 1 / scale
    return t.index_select(dim, index.to(t.device)) * _along(scale.to(t.dtype), t, dim)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[..., index]`` along the last axis, broadcasting the leading dims."""
    shape = torch.broadcast_shapes(values.shape, index.shape)
    return values.expand(shape).gather(-1, index.to(values.device).expand(shape))


def _compose_monomial(g: Monomial, h: Monomial) -> Monomial:
    """``g h`` as monomial matrices: ``index = h.index[g.index]``, scales multiplied."""
    (g_index, g_scale), (h_index, h_scale) = g, h
    return _take(h_index, g_index), g_scale * _take(h_scale, g_index)


def _inverse_monomial(g: Monomial) -> Monomial:
    """``M^-1`` of ``M[i, index[i]] = scale[i]``: the inverse permutation, ``1 / scale``."""
    index, scale = g
    back = torch.argsort(index, dim=-1)
    return back, 1 / _take(scale, back)


def _act_matrix(t: torch.Tensor, dim: int, a: torch.Tensor, dual: bool) -> torch.Tensor:
    """``A`` applied along ``dim`` (``A^-T`` on a dual axis); ``A`` may be batched."""
    a = a.to(device=t.device)
    if dual:
        a = torch.linalg.inv(a.float() if a.dtype in (torch.float16, torch.bfloat16) else a).mT
    lead = a.shape[:-2]
    a = a.to(t.dtype).reshape(*lead, *[1] * (t.dim() - 1 - len(lead)), *a.shape[-2:])
    return (a @ t.movedim(dim, -1).unsqueeze(-1)).squeeze(-1).movedim(-1, dim)


def _compose_matrix(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The matrix product ``g h`` in the wider of the two dtypes."""
    dtype = torch.promote_types(g.dtype, h.dtype)
    return g.to(dtype) @ h.to(device=g.device, dtype=dtype)


def _inverse_matrix(g: torch.Tensor) -> torch.Tensor:
    """``g^-1``."""
    return torch.linalg.inv(g)


def _act_grid(t: torch.Tensor, axes: tuple[str, ...], tie: tuple[str, str], p: torch.Tensor):
    """A grid element (permutation matrix of the cells ``i * k + j``, ``i`` along the axis
    of ``tie[0]``) applied to the pair of axes of ``t`` (its last ``len(axes)`` dims)."""
    types = [a.rstrip("*") for a in axes]
    first = types.index(tie[0])
    second = types.index(tie[1], first + 1 if tie[0] == tie[1] else 0)
    dims = (first - len(axes), second - len(axes))
    moved = t.movedim(dims, (-2, -1))
    flat = _act_matrix(moved.flatten(-2), -1, p, False)
    return flat.unflatten(-1, moved.shape[-2:]).movedim((-2, -1), dims)


def _outer_dims(t: torch.Tensor, dim: int, outer_dim: int) -> torch.Tensor:
    """``t`` with its outer dim and ``dim`` moved last, in that order."""
    return t.movedim((outer_dim, dim), (-2, -1))


def _lead_view(v: torch.Tensor, trailing: int, dims: int) -> torch.Tensor:
    """``v`` with ones inserted after its leading batch dims, to ``dims`` dims in all."""
    lead = v.shape[: v.dim() - trailing]
    return v.reshape(*lead, *[1] * (dims - v.dim()), *v.shape[v.dim() - trailing :])


def _act_monomial_nested(
    t: torch.Tensor, dim: int, outer_dim: int, g: Monomial, dual: bool
) -> torch.Tensor:
    """Per outer index ``h``: ``(g.t)[h, i] = scale[h, i] * t[h, index[h, i]]`` along ``dim``."""
    index, scale = g
    scale = scale.to(device=t.device)
    if dual:
        scale = 1 / scale
    moved = _outer_dims(t, dim, outer_dim)
    out = moved.gather(-1, index.to(t.device).expand(moved.shape))
    out = out * _lead_view(scale.to(t.dtype), 2, moved.dim())
    return out.movedim((-2, -1), (outer_dim, dim))


def _act_matrix_nested(
    t: torch.Tensor, dim: int, outer_dim: int, a: torch.Tensor, dual: bool
) -> torch.Tensor:
    """Per outer index ``h``: ``A[h]`` along ``dim`` (``A[h]^-T`` on a dual axis)."""
    a = a.to(device=t.device)
    if dual:
        a = torch.linalg.inv(a.float() if a.dtype in (torch.float16, torch.bfloat16) else a).mT
    moved = _outer_dims(t, dim, outer_dim).unsqueeze(-1)
    out = (_lead_view(a.to(t.dtype), 3, moved.dim()) @ moved).squeeze(-1)
    return out.movedim((-2, -1), (outer_dim, dim))


def _by_outer(element: object, outer_index: torch.Tensor) -> object:
    """A nested element reindexed along its outer dim: entry ``h`` becomes ``h'=index[h]``."""
    if isinstance(element, tuple):
        index, scale = element
        if index.dim() > 1:
            index = index.index_select(-2, outer_index.to(index.device))
        return index, scale.index_select(-2, outer_index.to(scale.device))
    return element.index_select(-3, outer_index.to(element.device))


def _element_size(element: object, nested: bool = False) -> tuple[int, int]:
    """The size an element acts on (a monomial's index length, a matrix's side) and, for
    a nested type, the size of its outer type (else 0)."""
    if isinstance(element, tuple):
        return element[1].shape[-1], element[1].shape[-2] if nested else 0
    return element.shape[-1], element.shape[-3] if nested else 0


def _check_size(name: str, axis: str, size: int, n: int) -> None:
    """Refuse an element sampled for size ``n`` acting on an axis of ``size``."""
    if n != size:
        raise ValueError(
            f"{name}: axis {axis} has size {size}, but the element of "
            f"{axis.rstrip('*')} acts on size {n}; sample it at the sizes of these weights "
            "(sample_group_element(sizes_of(x)))"
        )


def _act_weights(
    g: dict[str, object],
    x: dict[str, torch.Tensor],
    tensors: dict[str, tuple[str, ...]],
    actions: dict[str, object],
    nested: dict[str, str] | None = None,
    grids: dict[str, tuple[str, str]] | None = None,
    act_grid=None,
) -> dict[str, torch.Tensor]:
    """The element ``g`` (one entry per type, missing types: identity) acting on a
    weight-space dict ``x`` (any leading dims, the tensors' axes last).

    Every axis of a type in ``g`` is transformed by ``actions[type]`` (the kind's action:
    ``(t, dim, element, dual)``; the dual action on ``*`` axes). A nested type's element
    holds one element per index of its outer type (``nested[type]``) and acts first, on
    each outer slice (``actions[type]`` takes the outer dim too); then the outer permutation
    moves the slices. A grid's pair of axes (``grids[grid]``: its two fixed types) is
    permuted by the grid element's cell permutation (``act_grid``, i.e. ``_act_grid``).
    Other fixed axes are left alone."""
    nested = nested or {}
    grids = grids or {}
    out = {}
    for name, axes in tensors.items():
        t = x[name]
        types = [a.rstrip("*") for a in axes]
        for dim, axis in enumerate(axes, start=-len(axes)):
            type_ = axis.rstrip("*")
            if type_ in g and type_ in nested:
                outer_dim = types.index(nested[type_]) - len(axes)
                n, outer = _element_size(g[type_], nested=True)
                _check_size(name, axis, t.shape[dim], n)
                _check_size(name, axes[outer_dim], t.shape[outer_dim], outer)
                t = actions[type_](t, dim, outer_dim, g[type_], axis.endswith("*"))
        for dim, axis in enumerate(axes, start=-len(axes)):
            type_ = axis.rstrip("*")
            if type_ in g and type_ not in nested:
                _check_size(name, axis, t.shape[dim], _element_size(g[type_])[0])
                t = actions[type_](t, dim, g[type_], axis.endswith("*"))
        for grid, tie in grids.items():
            if grid in g and tie[0] in types:
                cells = t.shape[types.index(tie[0]) - len(axes)] ** 2
                _check_size(name, f"{tie[0]} x {tie[1]}", cells, _element_size(g[grid])[0])
                t = act_grid(t, axes, tie, g[grid])
        out[name] = t
    return out


def _compose_elements(
    g: dict[str, object],
    h: dict[str, object],
    compose: dict[str, object],
    nested: dict[str, str] | None = None,
    by_outer=None,
) -> dict[str, object]:
    """The product ``g h`` type by type (``compose[type]``); a type missing from ``g`` or
    ``h`` counts as the identity there. For a nested type (wreath product)
    ``(gh)_j = g_{p(j)} h_j`` with ``p`` the inverse of ``h``'s outer permutation
    (``by_outer``, i.e. ``_by_outer``, reindexes)."""
    g = dict(g)
    for t, outer in (nested or {}).items():
        if t in g and outer in h:
            g[t] = by_outer(g[t], torch.argsort(h[outer][0]))
    both = {t: compose[t](g[t], h[t]) for t in g if t in h}
    return {**h, **g, **both}


def _inverse_element(
    g: dict[str, object],
    inverse: dict[str, object],
    nested: dict[str, str] | None = None,
    by_outer=None,
) -> dict[str, object]:
    """``g``'s inverse type by type (``inverse[type]``); a nested type's elements are
    reindexed by its outer permutation (``by_outer``, i.e. ``_by_outer``)."""
    out = {t: inverse[t](g[t]) for t in g}
    for t, outer in (nested or {}).items():
        if t in g and outer in g:
            out[t] = by_outer(out[t], g[outer][0])
    return out
