"""Tests for lowdim.models: paper parameter counts, shapes, determinism, init, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lowdim.models import (
    INIT_SCHEMES,
    apply_init,
    architecture_names,
    build_model,
    parameter_count,
)

CIFAR = (3, 32, 32)
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]

# Small sizes so every forward pass is fast; patch sizes divide 8, 28 and 32.
SMALL = {
    "fc": {"widths": (32, 16)},
    "allcnn": {"channels": (8, 16)},
    "wr-10-1-4": {},
    "convmixer": {"dim": 16, "depth": 2},
    "vit": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "mlp_dim": 32, "patch_size": 4},
}

# docs/study.md B2's table, to the digits it gives: (scale, digits, value) means
# round(count / scale, digits) == value.
PAPER_COUNTS = {
    "fc": (1e6, 2, 3.84),
    "allcnn": (1e6, 3, 0.399),
    "wr-10-4-8": (1e6, 3, 0.300),
    "wr-16-4-64": (1e6, 1, 43.9),
    "convmixer": (1e6, 3, 0.594),
    "vit": (1e6, 2, 9.52),
}

# Exact counts worked out by hand from the docs/study.md B2 definitions (regression guard).
EXACT_COUNTS = {
    "fc": 3_837_066,
    "allcnn": 399_486,
    "wr-10-4-8": 300_226,
    "wr-16-4-64": 43_890_122,
    "convmixer": 594_186,
    "vit": 9_523_722,
}


def test_architecture_names_are_the_paper_six() -> None:
    assert architecture_names() == ["fc", "allcnn", "wr-10-4-8", "wr-16-4-64", "convmixer", "vit"]


@pytest.mark.parametrize("name", list(PAPER_COUNTS))
def test_paper_parameter_counts(name: str) -> None:
    count = parameter_count(build_model(name, CIFAR, 10))
    scale, digits, expected = PAPER_COUNTS[name]
    assert round(count / scale, digits) == expected
    assert count == EXACT_COUNTS[name]


def test_parameter_count_skips_frozen_parameters() -> None:
    model = build_model("fc", (1, 8, 8), 3, widths=(4,))
    assert parameter_count(model) == (64 * 4 + 4) + (4 * 3 + 3)
    model.net[1].weight.requires_grad_(False)
    assert parameter_count(model) == 4 + 4 * 3 + 3


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(SMALL))
def test_logits_shape_train_and_eval(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 7, **SMALL[name])
    x = torch.randn(4, *shape)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            logits = model(x)
        assert logits.shape == (4, 7)
        assert torch.isfinite(logits).all()


def test_backward_reaches_every_parameter() -> None:
    for name, size in SMALL.items():
        model = build_model(name, (3, 32, 32), 5, **size)
        model(torch.randn(4, 3, 32, 32)).logsumexp(1).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"{name}: no gradient for {missing}"


def test_other_wide_resnets_build() -> None:
    model = build_model("wr-16-4-8", (1, 28, 28), 10)
    blocks = [m for m in model.modules() if type(m).__name__ == "WideBlock"]
    assert len(blocks) == 6  # (16 - 4) / 6 = 2 blocks in each of 3 stages
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_wide_resnet_structure_follows_the_paper() -> None:
    model = build_model("wr-10-4-8", CIFAR, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    conv3 = [c for c in convs if c.kernel_size == (3, 3)]
    assert [c.out_channels for c in conv3] == [8, 32, 32, 64, 64, 128, 128]  # stem, 3 stages
    assert all(c.bias is None for c in conv3)
    assert all(c.bias is not None for c in convs if c.kernel_size == (1, 1))
    assert all(not bn.affine for bn in model.modules() if isinstance(bn, nn.BatchNorm2d))
    strided = [c for c in conv3 if c.stride == (2, 2)]
    assert [c.in_channels == c.out_channels for c in strided] == [True, True]  # the 2nd conv


@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_same_parameters(name: str) -> None:
    states = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        states.append(build_model(name, (1, 8, 8), 10, **SMALL[name]).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def _linear_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach().clone() for m in model.modules() if isinstance(m, nn.Linear)]


def test_default_init_leaves_model_untouched() -> None:
    torch.manual_seed(0)
    model = build_model("vit", CIFAR, 10, **SMALL["vit"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_init(model, "default", torch.Generator().manual_seed(1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_std_normal_init_redraws_linear_weights_only() -> None:
    torch.manual_seed(0)
    model = build_model("fc", (3, 32, 32), 10, widths=(256, 128))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_init(model, "std_normal", torch.Generator().manual_seed(1))
    weights = torch.cat([w.flatten() for w in _linear_weights(model)])
    assert abs(weights.std().item() - 1.0) < 0.01
    assert abs(weights.mean().item()) < 0.01
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"net.1.weight", "net.4.weight", "net.7.weight"}  # biases kept


def test_kaiming_init_has_fan_in_relu_scale() -> None:
    model = build_model("fc", (3, 32, 32), 10, widths=(512,))
    apply_init(model, "kaiming", torch.Generator().manual_seed(1))
    first = model.net[1].weight  # (512, 3072): std sqrt(2 / fan_in)
    assert abs(first.std().item() / (2 / 3072) ** 0.5 - 1.0) < 0.02


def test_kaiming_touches_linear_not_conv() -> None:
    model = build_model("allcnn", CIFAR, 10, channels=(8, 16))  # no Linear layer at all
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_init(model, "kaiming", torch.Generator().manual_seed(1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_is_reproducible_with_a_generator(scheme: str) -> None:
    models = [build_model("vit", CIFAR, 10, **SMALL["vit"]) for _ in range(2)]
    for model in models:
        apply_init(model, scheme, torch.Generator().manual_seed(7))
    pairs = zip(_linear_weights(models[0]), _linear_weights(models[1]), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs) == (scheme != "default")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "vgg16"}, r"unknown architecture 'vgg16'.*fc, allcnn.*resnet18.*wr-<depth>"),
        ({"name": "wr-10-4"}, r"malformed wide ResNet name 'wr-10-4'.*wr-<depth>-<widen>-<base>"),
        ({"name": "wr-12-4-8"}, r"invalid wide ResNet depth 12 .*6n \+ 4"),
        ({"name": "wr-4-4-8"}, r"invalid wide ResNet depth 4 "),
        ({"name": "wr-10-0-8"}, r"widen \(0\) and base \(8\) must be >= 1"),
        ({"name": "wr-10-4-8", "depth": 3}, r"takes no size keywords \(got depth\)"),
        ({"name": "fc", "width": (8,)}, r"unknown size keyword\(s\) width for 'fc': valid.*widths"),
        (
            {"name": "vit", "dims": 8, "heads": 2},
            r"unknown size keyword\(s\) dims for 'vit': valid ones are patch_size, dim, depth",
        ),
        ({"name": "fc", "widths": ()}, r"fc size widths=\(\) is invalid: .*non-empty sequence"),
        ({"name": "convmixer", "dim": 0}, r"convmixer size dim=0 is invalid: .*positive integer"),
        ({"name": "allcnn", "channels": (8,)}, r"allcnn channels must be two widths"),
        ({"name": "vit", "patch_size": 5}, r"divisible by patch_size=5: use e.g. patch_size=4"),
        ({"name": "convmixer", "patch_size": 64}, r"patch_size=64 is larger than the 32x32 image"),
        (
            {"name": "fc", "input_shape": (32, 32)},
            r"input_shape must be \(channels, height, width\)",
        ),
        ({"name": "fc", "input_shape": (3, 0, 32)}, r"three positive integers.*got \(3, 0, 32\)"),
        ({"name": "fc", "num_classes": 0}, r"num_classes must be a positive integer; got 0"),
        ({"name": "fc", "num_classes": True}, r"num_classes must be a positive integer; got True"),
    ],
)
def test_bad_input_messages(kwargs: dict, message: str) -> None:
    args = {"input_shape": CIFAR, "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_model(args.pop("name"), args.pop("input_shape"), args.pop("num_classes"), **args)


def test_numpy_integer_sizes_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    shape = tuple(np.array([1, 8, 8]))
    model = build_model("convmixer", shape, np.int64(3), dim=np.int64(8), depth=1)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match=r"architecture name must be a string.*got None"):
        build_model(None, CIFAR, 10)  # type: ignore[arg-type]


def test_vit_suggests_a_patch_size_for_28x28() -> None:
    with pytest.raises(ValueError, match=r"28x28\) must be divisible.*patch_size=7 .*1, 2, 4, 7"):
        build_model("vit", (1, 28, 28), 10, patch_size=8)


def test_unknown_init_scheme_message() -> None:
    model = build_model("fc", (1, 8, 8), 10, widths=(4,))
    with pytest.raises(ValueError, match=r"unknown init scheme 'xavier': .*default, kaiming"):
        apply_init(model, "xavier")
