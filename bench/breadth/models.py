"""The named architectures of the breadth benchmark, built from configs with random weights.

Every entry builds a real architecture from its library's own code (``timm.create_model(name,
pretrained=False)``, ``torchvision.models.<name>(weights=None)``, a ``transformers`` model
class from a config object built by hand), never downloading anything. Sizes are cut down
where the library's constructor allows it (fewer classes, fewer blocks, narrower configs,
small images) so that every step runs on a 2-core CPU in seconds; ``kwargs`` records exactly
what was changed from the library's defaults.

``ARCHS`` is the full list, ``TINY`` the 3 entries of the test suite's run (torch and
transformers only).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["ARCHS", "TINY", "Arch", "Example", "by_name", "torchvision_status"]

FAMILIES = ("cnn", "vit", "hybrid", "mlp-mixer", "encoder", "decoder", "encoder-decoder")


@dataclass(frozen=True)
class Example:
    """The example call of a model: ``model(*args, **kwargs)``."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def first(self) -> torch.Tensor:
        return self.args[0] if self.args else next(iter(self.kwargs.values()))

    def to(self, dtype: torch.dtype) -> Example:
        def cast(v):
            return v.to(dtype) if v.is_floating_point() else v

        return Example(
            tuple(cast(a) for a in self.args), {k: cast(v) for k, v in self.kwargs.items()}
        )


@dataclass(frozen=True)
class Arch:
    name: str  # the library's own name for the architecture
    family: str
    source: str  # "timm", "torchvision" or "transformers"
    kwargs: dict
    make: Callable[[], tuple[torch.nn.Module, Example]] = field(repr=False, compare=False)

    @property
    def config(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(size: int) -> Example:
    return Example((torch.randn(1, 3, size, size, generator=_seeded()),))


# -- torchvision ------------------------------------------------------------------------------

_TV_STATUS: dict[str, str] = {}


def torchvision_status() -> str:
    """How torchvision was imported (empty before the first import)."""
    return _TV_STATUS.get("status", "")


def import_torchvision():
    """``import torchvision``; see the comment below for the CPU-torch case.

    PyPI's Linux wheels of torchvision are built against CUDA torch: beside the CPU build of
    torch 2.13.0 their compiled ops (``_C.so``, linked to ``libtorch_cuda.so``) do not load,
    and ``import torchvision`` then stops at its fake-kernel registration for
    ``torchvision::nms`` ("operator torchvision::nms does not exist"). timm imports
    ``torchvision.ops.misc`` at import time, so it stops there too. The pure-Python parts
    (``torchvision.models``, ``torchvision.ops.misc``) need none of the compiled ops: when
    they did not load, the two operator names that torchvision registers fake kernels for
    unconditionally are declared (their schemas as in torchvision's own sources) so the
    import goes through; the compiled ops themselves (nms, roi_align, ...) stay missing and
    no model here calls them.
    """
    if "torchvision" in _TV_STATUS:
        return importlib.import_module("torchvision")
    try:
        import torchvision  # noqa: F401

        _TV_STATUS["status"] = "compiled ops loaded"
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        import sys

        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_STATUS["lib"] = lib  # kept alive: dropping it would remove the definitions
        _TV_STATUS["status"] = (
            f"compiled ops missing ({str(exc).splitlines()[0]}); pure-Python models only"
        )
    _TV_STATUS["torchvision"] = "imported"
    return importlib.import_module("torchvision")


def _timm(name: str, family: str, img: int = 64, **kwargs) -> Arch:
    kwargs = {"num_classes": 10, **kwargs}

    def make():
        import_torchvision()  # timm imports torchvision.ops.misc
        import timm

        model = timm.create_model(name, pretrained=False, **kwargs)
        return model, _image(img)

    return Arch(name, family, "timm", {**kwargs, "input": f"1x3x{img}x{img}"}, make)


def _tv(name: str, family: str, img: int = 64, **kwargs) -> Arch:
    kwargs = {"num_classes": 10, **kwargs}

    def make():
        tv = import_torchvision()
        return getattr(tv.models, name)(weights=None, **kwargs), _image(img)

    return Arch(name, family, "torchvision", {**kwargs, "input": f"1x3x{img}x{img}"}, make)


def _tv_class(name: str, family: str, img: int = 64, **kwargs) -> Arch:
    """A torchvision model class built from its constructor's arguments (the named
    factories fix the sizes)."""
    kwargs = {"num_classes": 10, **kwargs}

    def make():
        tv = import_torchvision()
        return getattr(tv.models, name)(**kwargs), _image(img)

    return Arch(name, family, "torchvision", {**kwargs, "input": f"1x3x{img}x{img}"}, make)


# -- transformers -----------------------------------------------------------------------------

#: a small text config; every class reads the keys it knows (and keeps the others as attributes)
_TEXT = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=32,
)
_TOKENS = 8


def _hf(model_cls: str, config_cls: str, family: str, seq2seq: bool = False, **cfg) -> Arch:
    def make():
        import transformers

        config = getattr(transformers, config_cls)(**cfg)
        config.use_cache = False
        if hasattr(config, "_attn_implementation"):
            config._attn_implementation = "eager"
        model = getattr(transformers, model_cls)(config)
        vocab = getattr(config, "vocab_size", 64)
        ids = torch.randint(3, vocab, (1, _TOKENS), generator=_seeded())
        kwargs = {"input_ids": ids}
        if seq2seq:
            kwargs["decoder_input_ids"] = torch.randint(3, vocab, (1, 4), generator=_seeded(1))
        return model, Example(kwargs=kwargs)

    return Arch(model_cls, family, "transformers", {"config": config_cls, **cfg}, make)


def _hf_image(model_cls: str, config_cls: str, family: str, img: int, **cfg) -> Arch:
    def make():
        import transformers

        config = getattr(transformers, config_cls)(**cfg)
        if hasattr(config, "_attn_implementation"):
            config._attn_implementation = "eager"
        model = getattr(transformers, model_cls)(config)
        px = torch.randn(1, getattr(config, "num_channels", 3), img, img, generator=_seeded())
        return model, Example(kwargs={"pixel_values": px})

    return Arch(model_cls, family, "transformers", {"config": config_cls, **cfg}, make)


def _decoder(model_cls: str, config_cls: str, **cfg) -> Arch:
    return _hf(model_cls, config_cls, "decoder", **{**_TEXT, **cfg})


def _encoder(model_cls: str, config_cls: str, **cfg) -> Arch:
    return _hf(model_cls, config_cls, "encoder", **{**_TEXT, **cfg})


_GPT2 = dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32)
_SEQ2SEQ = dict(
    vocab_size=64,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=32,
)
_T5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
_VIT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)

# -- the list ---------------------------------------------------------------------------------

_VIT_SMALL = dict(img_size=64, depth=2)

ARCHS: list[Arch] = [
    # CNN: timm
    _timm("resnet18", "cnn"),
    _timm("resnet50", "cnn"),
    _timm("resnet10t", "cnn"),
    _timm("resnet26d", "cnn"),
    _timm("resnext26ts", "cnn"),
    _timm("seresnet18", "cnn"),
    _timm("skresnet18", "cnn"),
    _timm("res2net50_14w_8s", "cnn"),
    _timm("resnest14d", "cnn"),
    _timm("resnetv2_50x1_bit", "cnn"),
    _timm("ecaresnet26t", "cnn"),
    _timm("regnetx_002", "cnn"),
    _timm("regnety_002", "cnn"),
    _timm("mobilenetv2_050", "cnn"),
    _timm("mobilenetv3_small_050", "cnn"),
    _timm("mobilenetv4_conv_small", "cnn"),
    _timm("efficientnet_b0", "cnn"),
    _timm("efficientnet_lite0", "cnn"),
    _timm("mnasnet_small", "cnn"),
    _timm("ghostnet_100", "cnn"),
    _timm("lcnet_050", "cnn"),
    _timm("fbnetc_100", "cnn"),
    _timm("spnasnet_100", "cnn"),
    _timm("densenet121", "cnn"),
    _timm("dla34", "cnn"),
    _timm("hrnet_w18_small", "cnn"),
    _timm("rexnet_100", "cnn"),
    _timm("mixnet_s", "cnn"),
    _timm("selecsls42b", "cnn"),
    _timm("tinynet_e", "cnn"),
    _timm("convnext_atto", "cnn"),
    _timm("convnextv2_atto", "cnn"),
    _timm("mobileone_s0", "cnn"),
    _timm("repvgg_a0", "cnn"),
    _timm("nf_resnet26", "cnn"),
    _timm("cspresnet50", "cnn"),
    _timm("dpn48b", "cnn"),
    _timm("inception_v3", "cnn", img=96),
    _timm("gernet_s", "cnn"),
    _timm("ese_vovnet19b_dw", "cnn"),
    _timm("hardcorenas_a", "cnn"),
    _timm("inception_next_tiny", "cnn"),
    _timm("mambaout_femto", "cnn"),
    # CNN: torchvision
    _tv("resnet18", "cnn"),
    _tv("mobilenet_v3_small", "cnn"),
    _tv("efficientnet_b0", "cnn"),
    _tv("squeezenet1_1", "cnn"),
    _tv("shufflenet_v2_x0_5", "cnn"),
    _tv("regnet_y_400mf", "cnn"),
    _tv("mnasnet0_5", "cnn"),
    _tv("densenet121", "cnn"),
    _tv("convnext_tiny", "cnn"),
    # hybrid (convolutions and attention): timm
    _timm("levit_128s", "hybrid", img=224),
    _timm("mobilevit_xxs", "hybrid", img=64),
    _timm("mobilevitv2_050", "hybrid", img=64),
    _timm("efficientformer_l1", "hybrid", img=224),
    _timm("efficientformerv2_s0", "hybrid", img=224),
    _timm("fastvit_t8", "hybrid"),
    _timm("efficientvit_b0", "hybrid"),
    _timm("edgenext_xx_small", "hybrid"),
    _timm("coat_lite_tiny", "hybrid", img=224),
    _timm("coatnet_nano_rw_224", "hybrid", img=224),
    _timm("tiny_vit_5m_224", "hybrid", img=224),
    _timm("botnet26t_256", "hybrid", img=256),
    _timm("visformer_tiny", "hybrid", img=224),
    _timm("poolformer_s12", "hybrid"),
    _timm("repvit_m1", "hybrid"),
    _timm("gcvit_xxtiny", "hybrid", img=224),
    _timm("convit_tiny", "hybrid", **_VIT_SMALL),
    # ViT: timm
    _timm("vit_tiny_patch16_224", "vit", img=64, **_VIT_SMALL),
    _timm("deit_tiny_patch16_224", "vit", img=64, **_VIT_SMALL),
    _timm("deit_tiny_distilled_patch16_224", "vit", img=64, **_VIT_SMALL),
    _timm("vit_small_patch16_rope_224", "vit", img=64, **_VIT_SMALL),
    _timm("flexivit_small", "vit", img=64, **_VIT_SMALL),
    _timm("eva02_tiny_patch14_224", "vit", img=56, img_size=56, depth=2),
    _timm("beit_base_patch16_224", "vit", img=64, embed_dim=64, num_heads=4, **_VIT_SMALL),
    _timm("cait_xxs24_224", "vit", img=64, **_VIT_SMALL),
    _timm("xcit_nano_12_p16_224", "vit", img=64, **_VIT_SMALL),
    _timm("pit_ti_224", "vit", img=224),
    _timm("swin_tiny_patch4_window7_224", "vit", img=224),
    _timm("crossvit_tiny_240", "vit", img=240),
    _timm("pvt_v2_b0", "vit"),
    _timm("twins_pcpvt_small", "vit", img=224),
    _timm("davit_tiny", "vit", img=224),
    _timm("nest_tiny", "vit", img=224),
    _timm("tnt_s_patch16_224", "vit", img=224),
    _timm("hiera_tiny_224", "vit", img=224),
    # ViT: torchvision and transformers
    _tv_class(
        "VisionTransformer",
        "vit",
        img=32,
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        mlp_dim=64,
    ),
    _tv("swin_t", "vit", img=64),
    _hf_image("ViTModel", "ViTConfig", "vit", 32, **_VIT),
    _hf_image("DeiTModel", "DeiTConfig", "vit", 32, **_VIT),
    _hf_image("Dinov2Model", "Dinov2Config", "vit", 32, **_VIT),
    # MLP-mixer
    _timm("mixer_s16_224", "mlp-mixer", img=64, img_size=64),
    _timm("mixer_s32_224", "mlp-mixer", img=64, img_size=64),
    _timm("gmlp_ti16_224", "mlp-mixer", img=64, img_size=64),
    _timm("gmixer_12_224", "mlp-mixer", img=64, img_size=64),
    _timm("resmlp_12_224", "mlp-mixer", img=64, img_size=64),
    _timm("convmixer_768_32", "mlp-mixer"),
    _timm("sequencer2d_s", "mlp-mixer", img=64),
    # encoders: transformers
    _encoder("BertModel", "BertConfig"),
    _encoder("RobertaModel", "RobertaConfig", pad_token_id=1),
    _hf(
        "DistilBertModel",
        "DistilBertConfig",
        "encoder",
        vocab_size=64,
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=32,
    ),
    _encoder("AlbertModel", "AlbertConfig", embedding_size=16),
    _encoder("ElectraModel", "ElectraConfig", embedding_size=16),
    _encoder("DebertaModel", "DebertaConfig"),
    _encoder("DebertaV2Model", "DebertaV2Config"),
    _encoder("XLMRobertaModel", "XLMRobertaConfig", pad_token_id=1),
    _encoder("MPNetModel", "MPNetConfig"),
    _encoder("RoFormerModel", "RoFormerConfig"),
    _encoder("ErnieModel", "ErnieConfig"),
    _encoder(
        "ModernBertModel",
        "ModernBertConfig",
        global_attn_every_n_layers=1,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
    ),
    _encoder("ConvBertModel", "ConvBertConfig", embedding_size=32),
    _encoder(
        "MobileBertModel",
        "MobileBertConfig",
        embedding_size=16,
        intra_bottleneck_size=16,
        true_hidden_size=16,
        num_feedforward_networks=1,
    ),
    _encoder("SqueezeBertModel", "SqueezeBertConfig", embedding_size=32),
    # decoders (GPT-2 / LLaMA style): transformers
    _hf("GPT2Model", "GPT2Config", "decoder", **_GPT2),
    _decoder("LlamaModel", "LlamaConfig", num_key_value_heads=2),
    _decoder("MistralModel", "MistralConfig", num_key_value_heads=2),
    _decoder("Qwen2Model", "Qwen2Config", num_key_value_heads=2),
    _decoder("Qwen3Model", "Qwen3Config", num_key_value_heads=2, head_dim=8),
    _decoder("GemmaModel", "GemmaConfig", num_key_value_heads=2, head_dim=8),
    _decoder("PhiModel", "PhiConfig"),
    _decoder("Phi3Model", "Phi3Config", pad_token_id=0),
    _decoder("StableLmModel", "StableLmConfig", num_key_value_heads=4),
    _decoder("OlmoModel", "OlmoConfig", pad_token_id=0),
    _decoder("GraniteModel", "GraniteConfig"),
    _hf(
        "OPTModel",
        "OPTConfig",
        "decoder",
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        max_position_embeddings=32,
        word_embed_proj_dim=32,
    ),
    _hf("BloomModel", "BloomConfig", "decoder", vocab_size=64, hidden_size=32, n_layer=2, n_head=4),
    _hf(
        "GPTNeoModel",
        "GPTNeoConfig",
        "decoder",
        vocab_size=64,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        max_position_embeddings=32,
    ),
    _decoder("GPTNeoXModel", "GPTNeoXConfig"),
    _hf(
        "GPTJModel",
        "GPTJConfig",
        "decoder",
        vocab_size=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=32,
        rotary_dim=4,
    ),
    _hf(
        "CodeGenModel",
        "CodeGenConfig",
        "decoder",
        vocab_size=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=32,
        n_ctx=32,
        rotary_dim=4,
    ),
    _hf(
        "FalconModel",
        "FalconConfig",
        "decoder",
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
    ),
    _decoder("BioGptModel", "BioGptConfig"),
    _hf(
        "XGLMModel",
        "XGLMConfig",
        "decoder",
        vocab_size=64,
        d_model=32,
        num_layers=2,
        attention_heads=4,
        ffn_dim=64,
        max_position_embeddings=32,
    ),
    _hf(
        "MptModel",
        "MptConfig",
        "decoder",
        vocab_size=64,
        d_model=32,
        n_layers=2,
        n_heads=4,
        max_seq_len=32,
    ),
    # encoder-decoders: transformers
    _hf("T5Model", "T5Config", "encoder-decoder", seq2seq=True, **_T5),
    _hf("MT5Model", "MT5Config", "encoder-decoder", seq2seq=True, **_T5),
    _hf("BartModel", "BartConfig", "encoder-decoder", seq2seq=True, **_SEQ2SEQ),
    _hf("MBartModel", "MBartConfig", "encoder-decoder", seq2seq=True, **_SEQ2SEQ),
    _hf("PegasusModel", "PegasusConfig", "encoder-decoder", seq2seq=True, **_SEQ2SEQ),
    _hf(
        "MarianModel",
        "MarianConfig",
        "encoder-decoder",
        seq2seq=True,
        decoder_vocab_size=64,
        pad_token_id=0,
        decoder_start_token_id=0,
        eos_token_id=2,
        **_SEQ2SEQ,
    ),
    _hf(
        "BlenderbotSmallModel", "BlenderbotSmallConfig", "encoder-decoder", seq2seq=True, **_SEQ2SEQ
    ),
    _hf("M2M100Model", "M2M100Config", "encoder-decoder", seq2seq=True, **_SEQ2SEQ),
]

#: the test suite's run: torch and transformers only, seconds each
_TINY_TEXT = dict(
    vocab_size=16,
    hidden_size=8,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=8,
)
TINY = [
    _hf("BertModel", "BertConfig", "encoder", **_TINY_TEXT),
    _hf(
        "GPT2Model",
        "GPT2Config",
        "decoder",
        vocab_size=16,
        n_embd=8,
        n_layer=1,
        n_head=2,
        n_positions=8,
    ),
    Arch(
        "TransformerEncoder",
        "encoder",
        "torch",
        {"d_model": 8, "nhead": 2, "num_layers": 2, "dim_feedforward": 16},
        lambda: (
            torch.nn.TransformerEncoder(
                torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 2
            ),
            Example((torch.randn(1, 5, 8, generator=_seeded()),)),
        ),
    ),
]


def by_name(names) -> list[Arch]:
    """The entries called ``names`` (``source:name`` picks one of two with the same name)."""
    out = []
    for n in names:
        source, _, name = n.rpartition(":")
        found = [a for a in ARCHS if a.name == name and source in ("", a.source)] or [
            a for a in TINY if a.name == name and source in ("", a.source)
        ]
        if not found:
            raise SystemExit(f"no architecture named {n!r} in bench/breadth/models.py")
        out.extend(found[:1] if not source else found)
    return out
