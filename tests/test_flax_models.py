"""Flax models from NetworkSpecs: forward passes, parameter counts, and MACs counted from the model itself."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces.flax_models import (FAST_COMPILE, CompressedConv, CompressedDense, ConvBN, build_model, conv2d,
                                      count_params)
from search_spaces.networks import layer_table
from search_spaces.reference import REFERENCE_NETWORKS, reference_network

jax.config.update("jax_default_prng_impl", "rbg")


def small(name):
    resolution = 99 if name == "alexnet" else 32
    return reference_network(name).at_resolution(resolution, num_classes=10)


def macs_from_model(spec):
    """MACs counted from the Flax model's own Conv/Dense calls: kernel shape x output positions."""
    model = build_model(spec)
    x = jnp.zeros((1, spec.resolution, spec.resolution, spec.in_channels))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    total = []

    def count(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(module, (ConvBN, CompressedConv, CompressedDense)):
            kernel = module.variables["params"]["kernel"]
            positions = 1 if isinstance(module, CompressedDense) else int(np.prod(out.shape[1:-1]))
            total.append(positions * int(np.prod(kernel.shape)))
        return out

    with nn.intercept_methods(count):
        jax.eval_shape(lambda v: model.apply(v, x), variables)
    return sum(total)


@pytest.mark.parametrize("name", sorted(REFERENCE_NETWORKS))
def test_forward_pass_and_parameter_count_match_the_spec(name):
    spec = small(name)
    model = build_model(spec)
    x = jnp.ones((2, spec.resolution, spec.resolution, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert count_params(variables["params"]) == spec.params
    if name in ("resnet18", "squeezenet_v1_1", "mobilenet_v1"):  # a real forward pass on three (compile time)
        # one program with XLA's cheaper optimisation, not op by op: each eager operation compiles alone
        logits = jax.jit(lambda key: model.apply(model.init(key, x), x), compiler_options=FAST_COMPILE)(
            jax.random.key(0))
        assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize("name", sorted(REFERENCE_NETWORKS))
def test_workload_macs_equal_macs_counted_from_the_flax_model(name):
    spec = small(name)
    assert macs_from_model(spec) == spec.workload().macs
    assert len([r for r in layer_table(spec) if r.layer.macs]) > 0


def test_model_runs_at_digits_and_imagenet_resolutions():
    spec = reference_network("squeezenet_v1_1")
    for resolution in (8, 224):
        s = spec.at_resolution(resolution, num_classes=10) if resolution == 224 else None
        if s is None:
            from search_spaces.networks import NetworkSpec, Stage, Stem
            s = NetworkSpec(Stem(kernel=3, stride=1, width=16), (Stage("fire", 2, 32, pool="max2"), Stage("fire", 1, 64)),
                            head="conv", resolution=8, num_classes=10)
        out = jax.eval_shape(lambda: build_model(s).init_with_output(jax.random.key(0), jnp.zeros((1, resolution, resolution, 3)))[0])
        assert out.shape == (1, 10)


# --- the model is the layer table interpreted: each block checked against a hand-written forward pass ---------------
def _conv_bn(v, name, x, stride=1, padding=None, groups=1, relu=True):
    """Inference-mode ConvBN written out: convolution, batch norm with the stored statistics, ReLU."""
    p, stats = v["params"][name], v["batch_stats"][name]["BatchNorm_0"]
    R, S = p["kernel"].shape[:2]
    pad = (R // 2, S // 2) if padding is None else padding
    y = jax.lax.conv_general_dilated(x, p["kernel"], (stride, stride), ((pad[0], pad[0]), (pad[1], pad[1])),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
    bn = p["BatchNorm_0"]
    y = (y - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-5) * bn["scale"] + bn["bias"]
    return jax.nn.relu(y) if relu else y


def _by_hand(block, v, x, stride, width, k):
    """What each block type computes, spelled out independently of the layer table."""
    p = "s0b0"
    C = x.shape[-1]
    if block == "conv":
        return _conv_bn(v, f"{p}_conv", x, stride)
    if block == "dwsep":
        return _conv_bn(v, f"{p}_pw", _conv_bn(v, f"{p}_dw", x, stride, groups=C))
    if block == "inverted":  # expansion 2: expand, depthwise, linear projection, no add (the width changes)
        y = _conv_bn(v, f"{p}_expand", x)
        y = _conv_bn(v, f"{p}_dw", y, stride, groups=y.shape[-1])
        return _conv_bn(v, f"{p}_project", y, relu=False)
    if block == "fire":
        y = _conv_bn(v, f"{p}_squeeze", x, stride)
        return jnp.concatenate([_conv_bn(v, f"{p}_expand1x1", y), _conv_bn(v, f"{p}_expand{k}x{k}", y)], axis=-1)
    shortcut = _conv_bn(v, f"{p}_shortcut", x, stride, relu=False)
    if block == "squeezenext":
        y = _conv_bn(v, f"{p}_reduce2", _conv_bn(v, f"{p}_reduce1", x, stride))
        y = _conv_bn(v, f"{p}_1x{k}", _conv_bn(v, f"{p}_{k}x1", y, padding=(k // 2, 0)), padding=(0, k // 2))
        return jax.nn.relu(_conv_bn(v, f"{p}_expand", y, relu=False) + shortcut)
    y = _conv_bn(v, f"{p}_conv2", _conv_bn(v, f"{p}_conv1", x, stride), relu=False)  # residual
    return jax.nn.relu(y + shortcut)


@pytest.mark.parametrize("block", ["conv", "dwsep", "inverted", "fire", "squeezenext", "residual"])
def test_each_block_computes_what_it_is_written_to(block):
    from search_spaces.networks import NetworkSpec, Stage, Stem

    k, width = 5, 16
    spec = NetworkSpec(Stem(3, 1, 8), (Stage(block, 1, width, kernel=k, stride=2, expansion=2.0 if block == "inverted"
                                             else 0.5),), head="fc", resolution=8, in_channels=3, num_classes=4)
    model = build_model(spec)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    v = model.init(jax.random.key(2), x)
    v = jax.tree_util.tree_map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(3), a.shape), v)  # no zero biases
    v["batch_stats"] = jax.tree_util.tree_map(jnp.abs, v["batch_stats"])  # variances stay positive
    stem = _conv_bn(v, "stem", x, padding=(1, 1))
    features = _by_hand(block, v, stem, 2, width, k).mean(axis=(1, 2))
    expected = features @ v["params"]["fc"]["kernel"] + v["params"]["fc"]["bias"]
    np.testing.assert_allclose(np.asarray(model.apply(v, x)), np.asarray(expected), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, (1, 1)), (3, 2, (1, 1)), (5, 2, (2, 2)), (7, 1, (3, 3)),
                                                     (3, 2, (0, 1)), (1, 1, (0, 0))])
def test_depthwise_convolution_as_taps_is_xlas_grouped_convolution(kernel, stride, padding):
    """conv2d computes a depthwise layer from shifted views: XLA's values and gradients up to the order of the sums;
    a grouped convolution that is not depthwise is XLA's own."""
    x = jax.random.normal(jax.random.key(0), (4, 9, 9, 6))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 1, 6))
    pads = (padding, padding)

    def xla(x, w, groups=6):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=groups)

    def loss(conv):
        return jax.grad(lambda x, w: (conv(x, w) * jnp.cos(conv(x, w))).sum(), argnums=(0, 1))

    taps = functools.partial(conv2d, stride=stride, padding=pads, groups=6)
    ours, theirs = taps(x, w), xla(x, w)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(loss(taps)(x, w), loss(xla)(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))
    halves = jax.random.normal(jax.random.key(2), (kernel, kernel, 3, 6))  # two groups of three channels
    np.testing.assert_array_equal(conv2d(x, halves, stride, pads, 2), xla(x, halves, 2))
