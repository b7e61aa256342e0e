"""Flax models from NetworkSpecs: forward passes, parameter counts, and MACs counted from the model itself."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from search_spaces.flax_models import CompressedConv, CompressedDense, ConvBN, build_model, count_params
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
        variables = model.init(jax.random.key(0), x)
        logits = model.apply(variables, x)
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
