"""Population training: several candidates trained together on one compiled elastic network, each its own
training (independent of its batch-mates, following a stand-alone training from the same weights), a bad
candidate failing alone, reloadable weights, and a search that trains its trials in batches."""

import logging

import jax
import numpy as np
import pytest

import codesign
from codesign.accuracy.datasets import load_dataset
from codesign.outcome import Status
from codesign.accuracy.population import ElasticRun, _programs, train_population
from codesign.accuracy.proxies import TrainedProxy, elastic_space
from codesign.accuracy.training import (StandaloneRun, TrainConfig, accuracy, init_variables, predictor,
                                       run_length, train_together)
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.compression import FLOAT, CompressionPolicy
from search_spaces.network_space import NetworkSpace
from search_spaces.networks import layer_table

jax.config.update("jax_default_prng_impl", "rbg")

from tiny import COMPRESSION, ELASTIC_NETWORKS as NETWORKS
#: One training configuration for every test here, so the space's programs compile once.
CONFIG = TrainConfig(epochs=1, optimizer="sgd", learning_rate=0.05, mask_updates=2, prune_end=0.5)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def space():
    return elastic_space(NETWORKS, COMPRESSION, 8)


def draw(count: int, seed: int):
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < count:
        spec = NETWORKS.draw(rng)
        policy = COMPRESSION.draw(rng, spec)
        pairs.append((spec, policy))
    return pairs


def test_each_candidate_is_trained_as_it_would_be_alone_with_one_compilation(space, data, caplog):
    pairs = draw(4, seed=2)
    assert any(setting.pruned for spec, policy in pairs for setting in policy.settings(layer_table(spec)).values())
    train_population(space, pairs[:1], data, CONFIG, seed=0)  # compiles the space's programs
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        together = train_population(space, pairs, data, CONFIG, seed=0)
    compiled = [r.getMessage() for r in caplog.records if "ompil" in r.getMessage() and "train_step" in r.getMessage()]
    assert compiled == []  # new candidates, no new compilation of the train step
    for (spec, policy), outcome in zip(pairs, together):
        alone = train_population(space, [(spec, policy)], data, CONFIG, seed=0)[0]
        assert outcome.status == Status.COMPLETE and len(outcome.history) == 1
        assert outcome.history == alone.history  # independent of its batch-mates, to the bit
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, outcome.weights, alone.weights))
        # the stand-alone model with the extracted weights predicts what the population run reported
        reloaded = accuracy(predictor(spec, policy), outcome.weights, data.x_val, data.y_val)
        assert reloaded == pytest.approx(outcome.score, abs=1.5 / len(data.y_val))
        if "masks" in outcome.weights:  # pruned weights are zeros in the returned parameters
            kernels = jax.tree_util.tree_leaves(outcome.weights["masks"])
            assert any(float(m.mean()) < 1.0 for m in kernels)
    assert len({o.score for o in together}) > 1  # different candidates, different results


SPEC = NETWORKS.from_params({"net.stem.kernel": 3, "net.s0.block": "fire", "net.s0.depth": 2, "net.s0.width": 16,
                             "net.s1.block": "dwsep", "net.s1.depth": 1, "net.s1.width": 8})
def side_by_side(space, data, policy, config=CONFIG):
    """A stand-alone run and an elastic run of SPEC from the same initial weights."""
    _, total = run_length(data, config.batch_size, config.epochs)
    start = init_variables(SPEC, policy, seed=3)
    return (StandaloneRun(SPEC, policy, config, total, seed=3),
            ElasticRun(space, _programs(space, config, total), SPEC, policy, seed=3, initial=start))


def largest_difference(a, b) -> float:
    """The largest difference of two parameter trees, relative to each array's largest magnitude."""
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max() / (np.abs(np.asarray(x)).max() + 1e-6))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("policy", [None, CompressionPolicy.uniform(FLOAT, FLOAT, 0.5, "unstructured")],
                         ids=["float", "pruned"])
def test_from_the_same_weights_a_whole_elastic_training_is_the_standalone_one(space, data, policy):
    standalone, elastic = side_by_side(space, data, policy)
    first, second = train_together([standalone, elastic], data, CONFIG, seed=0, reports=[None, None])
    assert largest_difference(first.weights["params"], second.weights["params"]) < 1e-4  # a whole epoch
    if policy is not None:  # the same weights pruned at each of the schedule's updates
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, first.weights["masks"],
                                                             second.weights["masks"]))
    assert first.history == second.history


def test_quantized_elastic_steps_and_mask_updates_are_the_standalone_ones(space, data):
    """Over a whole run, fake quantization's rounding lets the two part at some step (a weight lands on the
    other side of a rounding boundary), after which they are alike in distribution only; before it they
    agree to float tolerance, a mask update included."""
    standalone, elastic = side_by_side(space, data, CompressionPolicy.uniform(4, 8, 0.5, "unstructured"))
    x, y = data.x_train[:32], data.y_train[:32]
    for step in range(6):
        assert float(standalone.step(x, y)) == pytest.approx(float(elastic.step(x, y)), rel=1e-5)
        if step == 2:
            standalone.prune(0.5)
            elastic.prune(0.5)
            assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, standalone.masks, elastic.masks))
    assert largest_difference(standalone.weights()["params"], elastic.weights()["params"]) < 1e-4


def test_channel_pruned_elastic_training_keeps_the_standalone_loss_and_masks(space, data):
    """After a channel-pruning update the two compute the same loss, but single gradient entries differ by
    up to a few tenths of a percent (the central differences of the two losses agree there: the loss is
    not smooth at that point), so their weights part slowly; the losses and the masks stay together."""
    standalone, elastic = side_by_side(space, data, CompressionPolicy.uniform(FLOAT, FLOAT, 0.5, "channel"))
    x, y = data.x_train[:32], data.y_train[:32]
    for step in range(6):
        assert float(standalone.step(x, y)) == pytest.approx(float(elastic.step(x, y)), rel=2e-4)
        if step in (1, 4):
            standalone.prune(0.25 * step)
            elastic.prune(0.25 * step)
            assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, standalone.masks, elastic.masks))


def test_a_candidate_outside_the_space_fails_alone_with_the_field_and_the_range(space, data):
    inside = draw(1, seed=4)[0]
    wider = NetworkSpace(blocks=("dwsep",), stages=(2,), depths=(1,), widths=(32,), kernels=(3,), stem_kernels=(3,),
                         stem_widths=(8,)).draw(np.random.default_rng(0))
    outcomes = train_population(space, [(wider, None), inside], data, CONFIG, seed=0)
    assert outcomes[0].status == Status.FAILED and "net.s0.width" in outcomes[0].reason and "<= 16" in outcomes[0].reason
    assert outcomes[1].status == Status.COMPLETE


def test_population_settings_are_checked():
    with pytest.raises(ValueError, match="field 'population' must be an integer >= 1"):
        TrainedProxy(population=0)
    with pytest.raises(ValueError, match="needs its spaces"):
        TrainedProxy(population=2).evaluate(draw(1, 0), load_dataset("digits"))
    assert codesign.make_proxy("trained", epochs=1, population=3) == TrainedProxy(TrainConfig(epochs=1), 3)
    assert "engine" not in TrainedProxy().describe() and TrainedProxy(population=2).describe()["engine"] == "elastic"


def test_an_experiment_whose_space_has_no_elastic_network_is_refused_before_any_trial(tmp_path):
    from search_spaces.network_space import NetworkVariantSpace
    from search_spaces.reference import reference_network
    alexnet_variants = NetworkVariantSpace(base=reference_network("alexnet"), blocks=("conv",), stages=(0,),
                                           depths=(1,))
    imagenet_shaped = codesign.from_arrays(np.zeros((4, 227, 227, 3)), [0, 1, 2, 3], np.zeros((2, 227, 227, 3)),
                                           [0, 3], num_classes=1000)  # AlexNet's input and 1000 classes
    for proxy in (TrainedProxy(population=2), codesign.SupernetProxy()):
        with pytest.raises(ValueError, match="field 'proxy' .* head 'fc3' with hidden layers .* allowed: 'fc' or "
                                             "'conv' without hidden layers"):
            codesign.Experiment(name="e", run_folder=tmp_path / "run", network_space=alexnet_variants,
                                dataset=imagenet_shaped, compression_space=None, proxy=proxy, trials=1)
    codesign.Experiment(name="e", run_folder=tmp_path / "run", network_space=alexnet_variants, dataset=imagenet_shaped,
                        compression_space=None, proxy=TrainedProxy(), trials=1)  # one model per candidate: fine


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_search_trains_its_trials_in_batches_and_reloads_their_designs(tmp_path, data):
    """Six trials in batches of three (two Ray workers at once). test_a_search_trains_two_trials_together checks the
    same with one batch of two."""
    _search_in_batches(tmp_path, data, trials=6, population=3)


@pytest.mark.usefixtures("ray_session")
def test_a_search_trains_two_trials_together(tmp_path, data):
    _search_in_batches(tmp_path, data, trials=2, population=2)


def _search_in_batches(tmp_path, data, trials: int, population: int):
    experiment = codesign.Experiment(
        name="p", run_folder=tmp_path / "run", dataset="digits", network_space=NETWORKS, compression_space=COMPRESSION,
        accelerator_space=AcceleratorSpace(rows=(8, 16), cols=(8,), dataflows=("ws",), rf_bytes=(16,), gb_kib=(32,),
                                           dram_gbps=(16.0,), mac_bits=(8,), zero_skip=(True,)),
        # the module's space and training: the Ray workers load the programs the other tests compiled
        proxy=TrainedProxy(CONFIG, population=population), trials=trials, seed=0)
    results = codesign.run(experiment, progress=False)
    assert results.counts(duplicates=False) == {"complete": trials}
    batches = [t.user_attrs["run"]["worker"]["batch"] for t in results.trials if t.user_attrs["status"] == "complete"]
    assert max(batches) == population  # trials asked together were trained together
    best = codesign.load(tmp_path / "run").pareto_front[0]
    accuracy = float((best.predict(data.x_val, normalised=True) == data.y_val).mean())
    assert accuracy == pytest.approx(best.metrics["accuracy"], abs=1.5 / len(data.y_val))
