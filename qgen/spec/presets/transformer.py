"""``arch: transformer``: pre-LayerNorm transformer blocks between linear embeddings.

``h = W_in x + b_in``; each block ``h = h + MHA(LN(h))``, ``h = h + W2 act(W1 LN(h) + b1)
+ b2``; ``y = W_out h + b_out``, applied per token. Block ``i`` has a head type
``head<i>`` (heads can be permuted) with ``dk<i>`` and ``dv<i>`` nested in it: every head
has its own GL element on its query/key dimension (``Wq -> M Wq``, ``Wk -> M^-T Wk``)
and on its value/output dimension (``Wv -> N Wv``, ``Wo -> Wo N^-1``). The residual
stream ``r`` is one type tied across all skips; LayerNorm restricts it to permutations.
The MLP's hidden type ``m<i>`` follows the activation.
"""

from __future__ import annotations

from qgen.decls import TypeDecl
from qgen.spec.presets.base import Expansion, Params, Preset, layers_within


class Transformer(Preset):
    name = "transformer"
    summary = (
        "d_model, heads, d_head, mlp, depth, inputs, outputs, activation (gelu; or group: KIND)"
    )

    def expand(self, params: Params) -> Expansion:
        d_model = params.positive_int("d_model")
        heads = params.positive_int("heads")
        d_head = params.positive_int("d_head")
        mlp = params.positive_int("mlp")
        # sixteen tensors a block, four more around them
        depth = params.positive_int("depth", most=layers_within(16, 4))
        inputs = params.positive_int("inputs", d_model)
        outputs = params.positive_int("outputs", d_model)
        group = params.hidden_group("gelu")
        out = Expansion({}, [])
        out.type("x", "fixed", inputs)
        out.type("r", "perm", d_model)
        out.type("y", "fixed", outputs)
        out.tensor("W_in", "r", "x*")
        out.tensor("b_in", "r")
        for i in range(1, depth + 1):
            head = out.type(f"head{i}", "perm", heads)
            dk, dv, m = f"dk{i}", f"dv{i}", f"m{i}"
            out.types[dk] = _nested(dk, head, d_head)
            out.types[dv] = _nested(dv, head, d_head)
            out.type(m, group, mlp)
            out.tensor(f"ln{i}a_w", "r")
            out.tensor(f"ln{i}a_b", "r")
            out.tensor(f"Wq{i}", head, dk, "r*")
            out.tensor(f"bq{i}", head, dk)
            out.tensor(f"Wk{i}", head, dk + "*", "r*")
            out.tensor(f"bk{i}", head, dk + "*")
            out.tensor(f"Wv{i}", head, dv, "r*")
            out.tensor(f"bv{i}", head, dv)
            out.tensor(f"Wo{i}", "r", head + "*", dv + "*")
            out.tensor(f"bo{i}", "r")
            out.tensor(f"ln{i}b_w", "r")
            out.tensor(f"ln{i}b_b", "r")
            out.tensor(f"W1_{i}", m, "r*")
            out.tensor(f"b1_{i}", m)
            out.tensor(f"W2_{i}", "r", m + "*")
            out.tensor(f"b2_{i}", "r")
        out.tensor("W_out", "y", "r*")
        out.tensor("b_out", "y")
        return out


def _nested(name: str, outer: str, size: int) -> TypeDecl:
    return TypeDecl(name, "gl", size, within=outer)
