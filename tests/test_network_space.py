"""The network space: draws are valid, build workloads and models, round-trip JSON; Optuna reproducibility."""

import dataclasses

import jax
import numpy as np
import optuna
import pytest

from search_spaces.flax_models import build_model, count_params
from search_spaces.network_space import CIFAR_NETWORK_SPACE, DEFAULT_NETWORK_SPACE, NetworkSpace
from search_spaces.networks import NetworkSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
jax.config.update("jax_default_prng_impl", "rbg")


def in_space(space, spec):
    return (spec.resolution in space.resolutions and spec.stem.kernel in space.stem_kernels
            and spec.stem.width in space.stem_widths and len(spec.stages) in space.stages
            and spec.width_multiplier in space.width_multipliers
            and (spec.in_channels, spec.num_classes) == (space.in_channels, space.num_classes)
            and all(s.block in space.blocks and s.depth in space.depths and s.width in space.widths
                    and s.kernel in space.kernels for s in spec.stages))


@pytest.mark.parametrize("space", [DEFAULT_NETWORK_SPACE.for_data(8, 1, 10), CIFAR_NETWORK_SPACE.for_data(32, 3, 10)],
                         ids=["digits", "cifar"])
def test_thousand_draws_are_valid_build_and_round_trip(space):
    rng = np.random.default_rng(0)
    blocks = set()
    for _ in range(1000):
        spec = space.draw(rng)
        assert in_space(space, spec)
        assert NetworkSpec.from_json(spec.to_json()) == spec
        workload = spec.workload()
        assert workload.layers[-1].K == space.num_classes  # the network ends in the logits
        blocks.update(stage.block for stage in spec.stages)
    assert blocks == set(space.blocks)  # MobileNet-, SqueezeNet- and SqueezeNext-like all occur


def test_the_data_fills_what_a_space_leaves_unset_and_conflicts_are_errors():
    fitted = NetworkSpace(stages=(3,)).for_data(32, 3, 5)
    assert (fitted.resolutions, fitted.in_channels, fitted.num_classes) == ((32,), 3, 5)
    spec = fitted.draw(np.random.default_rng(0))
    assert (spec.resolution, spec.in_channels, spec.num_classes) == (32, 3, 5)
    assert NetworkSpace(num_classes=12).for_data(8, 1, 10).num_classes == 12  # more outputs than classes is allowed
    unset = DEFAULT_NETWORK_SPACE.draw(np.random.default_rng(0))  # on its own: the embedded digits' shape
    assert (unset.resolution, unset.in_channels, unset.num_classes) == (8, 1, 10)
    assert NetworkSpace.from_json(fitted.to_json()) == fitted and NetworkSpace.from_json(
        DEFAULT_NETWORK_SPACE.to_json()) == DEFAULT_NETWORK_SPACE
    for space, field in ((NetworkSpace(resolutions=(16,)), "'resolutions' is \\[16\\]"),
                         (NetworkSpace(resolutions=(32, 64)), "searches input sizes"),
                         (NetworkSpace(in_channels=1), "'in_channels' is 1 but d has 3-channel"),
                         (NetworkSpace(num_classes=4), "'num_classes' is 4 but d has 5 classes")):
        with pytest.raises(ValueError, match=field):
            space.for_data(32, 3, 5, "d")


def test_drawn_specs_build_flax_models_with_the_spec_parameter_count():
    rng = np.random.default_rng(1)
    for _ in range(12):
        spec = DEFAULT_NETWORK_SPACE.draw(rng)
        x = jax.numpy.zeros((1, spec.resolution, spec.resolution, spec.in_channels))
        variables = jax.eval_shape(build_model(spec).init, jax.random.key(0), x)
        assert count_params(variables["params"]) == spec.params


def test_sampled_spec_is_reproducible_from_trial_params():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        spec = DEFAULT_NETWORK_SPACE.sample(trial)
        assert DEFAULT_NETWORK_SPACE.from_params(trial.params) == spec
        assert all(name.startswith("net.") for name in trial.params)
        study.tell(trial, 0.0)


def test_space_round_trips_json_and_overrides():
    space = NetworkSpace(blocks=("inverted", "residual"), widths=(8, 16), resolutions=(32,), in_channels=3)
    assert NetworkSpace.from_json(space.to_json()) == space
    spec = space.draw(np.random.default_rng(0))
    assert {s.block for s in spec.stages} <= {"inverted", "residual"} and spec.resolution == 32
    with pytest.raises(ValueError, match=r"NetworkSpace: unknown field\(s\) \['width'\]; allowed: blocks, stages"):
        NetworkSpace.from_dict({**space.to_dict(), "width": [8]})


@pytest.mark.parametrize("kwargs, field", [
    (dict(blocks=("lstm",)), "'blocks'"), (dict(widths=(-8,)), "'widths'"), (dict(widths=(6,)), "'widths'"),
    (dict(depths=()), "'depths'"), (dict(kernels=(4,)), "'kernels'"),
])
def test_bad_space_fields_are_named(kwargs, field):
    with pytest.raises(ValueError, match=f"network space: field {field}"):
        NetworkSpace(**kwargs)


def test_bad_choice_message_lists_the_allowed_values():
    with pytest.raises(ValueError, match=r"field 'kernels' must be a non-empty tuple of values from 3, 5, 7; got 4"):
        NetworkSpace(kernels=(3, 4))
    with pytest.raises(ValueError, match=r"field 'depths' has repeated choices \(1, 1\)"):
        NetworkSpace(depths=(1, 1))
    assert NetworkSpace(blocks="fire", widths=[16]).blocks == ("fire",)  # a lone value is one choice


def test_missing_and_foreign_parameters_are_named():
    with pytest.raises(ValueError, match=r"network space: parameter 'net\.stem\.kernel' is missing"):
        DEFAULT_NETWORK_SPACE.from_params({})
    with pytest.raises(ValueError, match=r"network space: parameter 'net\.stem\.kernel'=4 is not one of \(3, 5\)"):
        DEFAULT_NETWORK_SPACE.from_params({"net.stem.kernel": 4})


def test_variant_space_changes_only_first_kernel_depths_and_blocks():
    from search_spaces.network_space import NetworkVariantSpace
    from search_spaces.reference import squeezenet_v1_1

    base = squeezenet_v1_1()
    space = NetworkVariantSpace(base, stem_kernels=(3, 5), depths=(1, 3), stages=(0, 2))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        spec = space.sample(trial)
        assert space.from_params(trial.params) == spec
        assert set(trial.params) == {"net.stem.kernel", "net.s0.block", "net.s0.depth", "net.s2.block", "net.s2.depth"}
        assert [s.width for s in spec.stages] == [s.width for s in base.stages]
        assert spec.stages[1] == base.stages[1] and spec.stages[3] == base.stages[3]
        assert spec.stem.stride == base.stem.stride and spec.head == base.head
        study.tell(trial, 0.0)
    params = {"net.stem.kernel": 3, "net.s0.block": "fire", "net.s0.depth": 1, "net.s2.block": "fire", "net.s2.depth": 3}
    assert space.from_params(params).stages[0] == dataclasses.replace(base.stages[0], depth=1)
    with pytest.raises(ValueError, match=r"network variant space: parameter 'net\.s2\.block' is missing"):
        space.from_params({k: v for k, v in params.items() if k != "net.s2.block"})
    assert NetworkVariantSpace.from_json(space.to_json()) == space
    with pytest.raises(ValueError, match="'stages'"):
        NetworkVariantSpace(base, stages=(9,))


def test_variant_space_base_params_rebuild_the_base_network():
    from search_spaces.network_space import NetworkVariantSpace
    from search_spaces.reference import squeezenet_v1_1

    base = squeezenet_v1_1()
    space = NetworkVariantSpace(base, stem_kernels=(3,), depths=(1, 2, 3), stages=(0, 2))
    params = space.base_params()
    assert params == {"net.s0.block": base.stages[0].block, "net.s0.depth": base.stages[0].depth,
                      "net.s2.block": base.stages[2].block, "net.s2.depth": base.stages[2].depth}
    assert space.from_params(params).replace(name=base.name) == base.replace(stem=dataclasses.replace(base.stem, kernel=3))
    with pytest.raises(ValueError, match=r"net\.s0\.depth.*not one of \(4, 5\)"):
        NetworkVariantSpace(base, depths=(4, 5)).base_params()
