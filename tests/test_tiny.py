"""tests/tiny.py holds what many tests share; this checks what its docstring says of it: the spaces are as
small as stated, ``experiment`` is the stated search, and one network built twice lowers to the same program
(what lets the run's compilation cache serve it to every later test)."""

import jax
import jax.numpy as jnp
import numpy as np

import codesign
from search_spaces.flax_models import build_model

import tiny


def test_the_spaces_are_as_small_as_stated():
    assert tiny.ACCELERATORS.size == 12
    assert {(a.rows, a.cols) for a in tiny.ACCELERATORS.grid()} == {(8, 8), (8, 16), (16, 8), (16, 16)}
    assert {a.dataflow for a in tiny.ACCELERATORS.grid()} == {"ws", "os", "flex"}
    rng = np.random.default_rng(0)
    drawn = [tiny.NETWORKS.draw(rng) for _ in range(50)]
    assert {len(spec.stages) for spec in drawn} == {1} and {spec.stages[0].depth for spec in drawn} == {1}
    assert {spec.stages[0].block for spec in drawn} == {"dwsep", "fire"}
    assert {spec.stages[0].width for spec in drawn} == {8, 16}
    elastic = [tiny.ELASTIC_NETWORKS.draw(rng) for _ in range(50)]
    assert {len(spec.stages) for spec in elastic} == {2}
    assert {stage.depth for spec in elastic for stage in spec.stages} == {1, 2}
    policies = {tiny.COMPRESSION.draw(rng, spec).default for spec in elastic}
    assert {p.w_bits for p in policies} == {4, 8} and {p.a_bits for p in policies} == {8, 16}
    assert {p.prune_ratio for p in policies} == {0.0, 0.5}


def test_experiment_is_the_stated_search_and_takes_changes(tmp_path):
    experiment = tiny.experiment(tmp_path / "run")
    assert experiment.trials == 4 and experiment.seed == 1 and experiment.compression_space is None
    assert experiment.dataset == "synthetic" and experiment.proxy == codesign.ZeroCostProxy("params")
    assert experiment.network_space == tiny.NETWORKS and experiment.accelerator_space == tiny.ACCELERATORS
    assert tiny.experiment(tmp_path / "other", trials=2).trials == 2


def test_one_network_built_twice_lowers_to_the_same_program():
    spec = tiny.NETWORKS.draw(np.random.default_rng(0))
    x = jnp.zeros((4, spec.resolution, spec.resolution, spec.in_channels))

    def lowered():
        model = build_model(spec)
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        return jax.jit(lambda v, images: model.apply(v, images)).lower(variables, x).as_text()
    assert lowered() == lowered()
