"""Behavioural checks of the architectures against docs/study.md B2 (issue 26 item 2).

Shape and parameter-count tests pass for a wide-ResNet block in post-activation order, a ViT that
pools the mean token, or post-LayerNorm transformer blocks: the parameters are the same. These
tests check what each definition implies for the computation instead.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lowdim.models import build_model
from lowdim.models.vit import Block
from lowdim.models.wide_resnet import WideBlock

VIT = {"dim": 16, "depth": 2, "heads": 2, "dim_head": 8, "mlp_dim": 24, "patch_size": 4}


@pytest.fixture(autouse=True)
def float64_default():
    """float64, so that 'exactly the shortcut' and 'unchanged' can be asserted to 1e-12."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


def _zero_(*modules: nn.Module) -> None:
    with torch.no_grad():
        for module in modules:
            for param in module.parameters():
                param.zero_()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- wide ResNet


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(8, 8, 1), (4, 8, 1), (8, 8, 2)],
                         ids=["identity", "widen", "stride"])
def test_wide_block_with_zero_convs_is_its_shortcut(c_in, c_out, stride, train):
    # Pre-activation: out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x), nothing after
    # the sum. With both 3x3 convs zeroed the residual branch is exactly 0, so the block returns
    # its shortcut: x itself, or the 1x1 projection when the shape changes. A post-activation
    # block (conv-BN-ReLU, ReLU after the sum) returns relu(shortcut(x)) instead.
    block = WideBlock(c_in, c_out, stride).train(train)
    _zero_(block.conv1, block.conv2)
    x = torch.randn(4, c_in, 8, 8)
    out = block(x)
    if c_in == c_out and stride == 1:
        assert isinstance(block.shortcut, nn.Identity)
        assert torch.equal(out, x), "zero convs: the block must return x (pre-activation)"
    else:
        conv = block.shortcut
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
        assert conv.stride == (stride, stride) and conv.bias is not None
        assert _close(out, conv(x)), "zero convs: the block must return its 1x1 projection"
    assert (out < 0).any(), "negative outputs: no ReLU after the residual sum"


def test_wide_block_convs_read_bn_relu_of_their_input():
    # Each 3x3 conv reads BN(affine=False)-ReLU of what comes before it (batch statistics in
    # training mode), the first one of the block input itself.
    block = WideBlock(4, 8, 2).train()
    seen: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    for name in ("conv1", "conv2"):
        conv = getattr(block, name)
        conv.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0]))
        conv.register_forward_hook(lambda m, args, out, name=name: outputs.__setitem__(name, out))
    x = 3 * torch.randn(6, 4, 8, 8) + 1
    out = block(x)
    bn_relu = lambda t: F.relu(F.batch_norm(t, None, None, training=True))  # noqa: E731
    assert _close(seen["conv1"], bn_relu(x)), "conv1 must read BN-ReLU of the block input"
    assert _close(seen["conv2"], bn_relu(outputs["conv1"])), "conv2 must read BN-ReLU of conv1"
    assert _close(out, outputs["conv2"] + block.shortcut(x))


def test_wide_resnet_head_is_bn_relu_pool_linear():
    # After the last stage: BN-ReLU, global average pool, linear (docs/study.md B2).
    model = build_model("wr-10-1-4", (3, 16, 16), 5).train()
    seen = {}
    model.stages.register_forward_hook(lambda m, args, out: seen.__setitem__("stages", out))
    logits = model(torch.randn(6, 3, 16, 16))
    features = F.relu(F.batch_norm(seen["stages"], None, None, training=True)).mean((2, 3))
    assert _close(logits, model.linear(features))


# --------------------------------------------------------------------------- ViT


def _vit() -> nn.Module:
    return build_model("vit", (3, 16, 16), 5, **VIT)


def test_vit_head_reads_the_class_token_only():
    # CLS pooling: the logits depend on the final state of token 0 and on no other token.
    model = _vit().eval()
    x = torch.randn(3, 3, 16, 16)
    final = {}

    def perturb(tokens):
        def hook(module, args, out):
            final["tokens"] = out
            return out + tokens
        return hook

    logits = model(x)
    noise = torch.zeros(3, 17, VIT["dim"])
    noise[:, 1:] = 100 * torch.randn(3, 16, VIT["dim"])  # every patch token
    handle = model.blocks.register_forward_hook(perturb(noise))
    assert _close(model(x), logits), "the logits must not depend on the patch tokens"
    handle.remove()
    assert final["tokens"].shape == (3, 17, VIT["dim"])
    assert _close(logits, model.head(final["tokens"][:, 0])), "the head reads token 0"
    noise = torch.zeros(3, 17, VIT["dim"])
    noise[:, 0] = torch.randn(3, VIT["dim"])  # the class token alone
    model.blocks.register_forward_hook(perturb(noise))
    assert not torch.allclose(model(x), logits, atol=1e-3)


def test_vit_class_token_is_prepended_and_embedded():
    # Token 0 entering the blocks is cls_token + pos_embedding[0], whatever the image.
    model = _vit()
    seen = []
    model.blocks.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model(torch.randn(2, 3, 16, 16))
    expected = (model.cls_token + model.pos_embedding[:, :1])[0, 0]
    assert _close(seen[0][0, 0], expected) and _close(seen[0][1, 0], expected)


@pytest.mark.parametrize("zeroed", ["both", "attention", "mlp"])
def test_vit_block_is_pre_layernorm(zeroed):
    # Pre-LN: y = x + attn(LN1(x)); out = y + mlp(LN2(y)). A branch whose output layer is zeroed
    # adds exactly nothing, so with both zeroed the block is the identity; post-LN blocks
    # (LN(x + attn(x)), ...) would normalise x instead.
    block = Block(16, 2, 8, 24)
    x = 5 * torch.randn(3, 7, 16) + 2  # far from LayerNorm's output statistics
    attn = block.attn(block.norm1(x))
    if zeroed in ("both", "attention"):
        _zero_(block.attn.to_out)
        attn = torch.zeros_like(x)
    y = x + attn
    mlp = block.mlp(block.norm2(y))
    if zeroed in ("both", "mlp"):
        _zero_(block.mlp[2])
        mlp = torch.zeros_like(x)
    out = block(x)
    assert _close(out, y + mlp), "pre-LN: x + attn(LN1(x)), then + mlp(LN2(.))"
    if zeroed == "both":
        assert torch.equal(out, x), "pre-LN with both branches zeroed is the identity"


def test_vit_attention_is_softmax_attention_over_heads():
    # Multi-head scaled dot-product attention, heads laid out as (head, dim_head) in to_qkv.
    block = Block(16, 2, 8, 24)
    attention = block.attn
    x = torch.randn(2, 5, 16)
    q, k, v = attention.to_qkv(x).chunk(3, dim=-1)
    heads = [
        torch.softmax(q[..., h * 8:(h + 1) * 8] @ k[..., h * 8:(h + 1) * 8].transpose(1, 2)
                      / 8 ** 0.5, dim=-1) @ v[..., h * 8:(h + 1) * 8]
        for h in range(2)
    ]
    assert _close(attention(x), attention.to_out(torch.cat(heads, dim=-1)))


# --------------------------------------------------------------------------- the others


def _normalised_per_channel(t: torch.Tensor) -> bool:
    dims = [0, *range(2, t.ndim)]
    mean, var = t.mean(dims), t.var(dims, unbiased=False)
    return torch.allclose(mean, torch.zeros_like(mean), atol=1e-6) and torch.allclose(
        var, torch.ones_like(var), atol=1e-3)


def test_convmixer_residual_wraps_the_depthwise_conv_only():
    # [residual(depthwise conv -> GELU -> BN) -> 1x1 conv -> GELU -> BN]: with the depthwise conv
    # zeroed the residual part is the identity (BN of a constant is 0 in training mode), and the
    # layer's output is BN(GELU(pointwise(x))), normalised per channel.
    model = build_model("convmixer", (3, 16, 16), 5, dim=8, depth=2, kernel_size=3).train()
    layer = model.net[3]
    depthwise = layer[0].fn[0]
    assert depthwise.groups == 8 and depthwise.kernel_size == (3, 3)
    x = torch.randn(4, 8, 8, 8)
    _zero_(depthwise)
    assert torch.equal(layer[0](x), x)
    out = layer(x)
    expected = F.batch_norm(F.gelu(layer[1](x)), None, None, training=True)
    assert _close(out, expected) and _normalised_per_channel(out)


def test_allcnn_logits_are_pooled_batchnorm_outputs():
    # Each conv is followed by ReLU then BN, the logits layer included: in training mode the
    # logits are spatial means of a per-channel normalised map, so their batch mean is 0.
    model = build_model("allcnn", (3, 16, 16), 5, channels=(8, 12)).train()
    logits = model(torch.randn(8, 3, 16, 16))
    assert torch.allclose(logits.mean(0), torch.zeros(5), atol=1e-9)
    assert (logits < 0).any()  # BN last: no ReLU after it


def test_fc_hidden_layers_are_linear_relu_then_batchnorm():
    # Linear -> ReLU -> BN(affine=False): each next Linear reads normalised features.
    model = build_model("fc", (1, 8, 8), 5, widths=(32, 16)).train()
    seen = []
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for linear in linears:
        linear.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model(torch.randn(16, 1, 8, 8))
    assert len(seen) == 3
    for i in (1, 2):  # the input of Linear i is BN(ReLU(Linear i-1 of its own input))
        pre = F.relu(linears[i - 1](seen[i - 1]))
        assert _close(seen[i], F.batch_norm(pre, None, None, training=True))
        assert _normalised_per_channel(seen[i])
