"""The weight-sharing supernet proxy: trained once per space and stored, reused only for that space, a
candidate's reloaded model predicts what the supernet scored, bad candidates name the field and the range,
and a search runs with it."""

import dataclasses
import json

import jax
import numpy as np
import pytest

import codesign
from codesign.accuracy import supernet as supernet_module
from codesign.accuracy.datasets import load_dataset
from codesign.outcome import Status
from codesign.accuracy.supernet import SupernetConfig, SupernetProxy, supernet_key, train_supernet
from codesign.accuracy.training import accuracy, predictor
from search_spaces.compression import CompressionPolicy
from search_spaces.elastic import init
from search_spaces.network_space import NetworkSpace

jax.config.update("jax_default_prng_impl", "rbg")

from tiny import COMPRESSION, ELASTIC_NETWORKS as NETWORKS
CONFIG = SupernetConfig(epochs=4, batch_size=32, learning_rate=1e-2, calibration_images=64)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", seed=0)


PROGRESS: list = []  # (step, steps, loss) of the fixture's training


@pytest.fixture(scope="module")
def trained(data):
    def record(step, steps, loss):
        PROGRESS.append((step, steps, None if loss is None else float(loss)))
    return train_supernet(NETWORKS, COMPRESSION, data, CONFIG, seed=0, progress=record)


def test_the_training_reports_its_progress_to_the_drivers_bar(trained, tmp_path):
    """Every step is reported; the file a worker writes is what the driver's bar reads and shows."""
    from codesign.accuracy.cache import OneOffProgress, describe_progress, one_offs_in_progress

    steps = trained.record["steps"]
    assert [step for step, _, _ in PROGRESS] == list(range(steps + 1)) and {s for _, s, _ in PROGRESS} == {steps}
    losses = [loss for _, _, loss in PROGRESS[1:]]
    assert PROGRESS[0][2] is None and all(np.isfinite(losses)) and losses[-1] < losses[0]
    clock = iter([0.0, 0.0, 30.0, 30.5, 32.0, 40.0])  # started, compiling; step 1 (compiled); too soon; 3; 10
    folder = tmp_path / "accuracy_cache" / "supernets"
    report = OneOffProgress(folder, "k", "supernet", epochs=2, clock=lambda: next(clock))
    report(0, 10)
    shown, = one_offs_in_progress(tmp_path / "accuracy_cache")
    assert describe_progress(shown) == "supernet epoch 0.0/2 (0/10 steps), compiling"
    report(1, 10, np.float32(2.5))
    report(2, 10, np.float32(2.5))  # 0.5 s after the last write: not written
    written, = one_offs_in_progress(tmp_path / "accuracy_cache")
    assert describe_progress(written).startswith("supernet epoch 0.2/2 (1/10 steps)")
    report(3, 10, np.float32(2.25))
    shown, = one_offs_in_progress(tmp_path / "accuracy_cache")
    # 1 s a step after the first
    assert describe_progress(shown) == "supernet epoch 0.6/2 (3/10 steps), loss 2.25, 7 s left"
    assert one_offs_in_progress(tmp_path / "accuracy_cache", since=shown["updated"] + 1) == []  # an older run's
    report(10, 10, np.float32(1.0))
    assert one_offs_in_progress(tmp_path / "accuracy_cache") == []  # done: no longer shown


def test_the_sandwich_trains_the_shared_weights_and_scores_are_deterministic(trained, data):
    largest = NETWORKS.from_params({"net.stem.kernel": 5, "net.s0.block": "dwsep", "net.s0.depth": 2,
                                    "net.s0.width": 16, "net.s1.block": "dwsep", "net.s1.depth": 2, "net.s1.width": 16})
    untrained = dataclasses.replace(trained, variables=jax.device_get(init(trained.space, 0)))
    policy = CompressionPolicy.uniform(8, 16)
    assert trained.score([(largest, policy)], data)[0] > 0.5 > untrained.score([(largest, policy)], data)[0]
    rng = np.random.default_rng(3)
    specs = [NETWORKS.draw(rng) for _ in range(4)]
    pairs = [(spec, COMPRESSION.draw(rng, spec)) for spec in specs]
    assert np.array_equal(trained.score(pairs, data), trained.score(pairs, data))  # fixed calibration images


def test_a_candidates_reloaded_model_predicts_what_the_supernet_scored(trained, data):
    rng = np.random.default_rng(5)
    for _ in range(3):
        spec = NETWORKS.draw(rng)
        policy = CompressionPolicy.uniform(4, 8, 0.5, ("unstructured", "channel")[_ % 2])
        scored, variables = trained.evaluate(spec, policy, data, with_weights=True)
        reloaded = accuracy(predictor(spec, policy), variables, data.x_val, data.y_val)
        assert reloaded == pytest.approx(scored, abs=1.5 / len(data.y_val))


def test_the_supernet_is_stored_reused_for_its_space_and_never_for_another(trained, data, tmp_path, monkeypatch):
    calls = []
    real = supernet_module.train_supernet

    def counted(*args, **kwargs):
        calls.append(args[:2])
        return trained if args[0] == NETWORKS else real(*args, **kwargs)
    monkeypatch.setattr(supernet_module, "train_supernet", counted)
    monkeypatch.setattr(supernet_module, "_LOADED", {})
    proxy = SupernetProxy(CONFIG).bind(NETWORKS, COMPRESSION, tmp_path)
    spec = NETWORKS.draw(np.random.default_rng(0))
    first, = proxy.evaluate([(spec, None)], data)
    key = supernet_key(NETWORKS, COMPRESSION, data, CONFIG, 0)
    stored = tmp_path / "supernets"  # bind's folder keeps its supernets there
    record = json.loads((stored / f"{key}.json").read_text())
    assert (stored / f"{key}.msgpack").is_file() and record["dataset"] == data.fingerprint
    assert record["network_space"] == NETWORKS.to_dict()

    monkeypatch.setattr(supernet_module, "_LOADED", {})  # another worker: loads the stored supernet
    again, = SupernetProxy(CONFIG).bind(NETWORKS, COMPRESSION, tmp_path).evaluate([(spec, None)], data)
    assert len(calls) == 1 and first.status == again.status == Status.COMPLETE
    assert again.score == first.score

    narrower = NetworkSpace(blocks=("dwsep",), stages=(2,), depths=(1,), widths=(8,), kernels=(3,),
                            stem_kernels=(3,), stem_widths=(8,))
    small = SupernetProxy(SupernetConfig(epochs=0.1, batch_size=32)).bind(narrower, None, tmp_path)
    small.evaluate([(narrower.draw(np.random.default_rng(0)), None)], data)
    assert len(calls) == 2 and calls[1][0] == narrower  # another space: its own supernet
    assert len(list(stored.glob("*.msgpack"))) == 2

    # a stored supernet named by its file: used for its own spaces and data, refused for others
    file = str(stored / f"{key}.json")
    reused, = SupernetProxy(file=file).bind(NETWORKS, COMPRESSION).evaluate([(spec, None)], data)
    assert reused.score == first.score and len(calls) == 2
    with pytest.raises(ValueError, match=r"was trained on other spaces: network_space field 'blocks'"):
        SupernetProxy(file=file).bind(narrower, None)
    other = load_dataset("digits", seed=1)
    refused, = SupernetProxy(file=file).bind(NETWORKS, COMPRESSION).evaluate([(spec, None)], other)
    assert refused.status == Status.FAILED and "another dataset" in refused.reason and other.fingerprint in refused.reason
    with pytest.raises(ValueError, match="not a stored supernet record"):
        SupernetProxy(file=str(stored / f"{key}.msgpack")).bind(NETWORKS, COMPRESSION)


@pytest.mark.parametrize("change, message", [
    (lambda spec, policy: (spec.replace(stages=(dataclasses.replace(spec.stages[0], width=32),) + spec.stages[1:]), policy),
     "net.s0.width 32 is outside the space; allowed: <= 16"),
    (lambda spec, policy: (spec, CompressionPolicy.uniform(2, 8)),
     "w_bits 2 was never trained; the supernet's range: 4, 8"),
    (lambda spec, policy: (spec, CompressionPolicy.uniform(8, 8, 0.25)),
     "prune_ratio 0.25 was never trained; the supernet's range: 0.0, 0.5"),
])
def test_a_candidate_outside_the_supernet_names_the_field_and_its_range(trained, data, change, message):
    spec, policy = change(NETWORKS.draw(np.random.default_rng(0)), None)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        trained.evaluate(spec, policy, data)


def test_supernet_settings_are_checked():
    with pytest.raises(ValueError, match="supernet: field 'sandwich' must be an integer >= 0"):
        SupernetConfig(sandwich=-1)
    with pytest.raises(ValueError, match="SupernetProxy needs its spaces"):
        SupernetProxy().supernet(load_dataset("synthetic"))
    assert codesign.make_proxy("supernet", epochs=3) == SupernetProxy(SupernetConfig(epochs=3))
    with pytest.raises(ValueError, match="field 'schedule' must be one of sandwich, progressive, got 'ofa'"):
        SupernetConfig(schedule="ofa")


def test_the_progressive_schedule_unlocks_kernel_depth_width_then_compression():
    rng = np.random.default_rng(0)

    def members(unlocked):
        return [supernet_module._phase_members(NETWORKS, COMPRESSION, rng, 8, unlocked, sandwich=2) for _ in range(30)]

    def seen(steps, field):
        return {value for step in steps for spec, policy in step for value in field(spec, policy)}

    widths = lambda spec, policy: [s.width for s in spec.stages]  # noqa: E731
    depths = lambda spec, policy: [s.depth for s in spec.stages]  # noqa: E731
    bits = lambda spec, policy: [policy.default.w_bits, policy.default.prune_ratio]  # noqa: E731
    first = members(())
    assert {len(step) for step in first} == {1}  # the largest alone: widest, deepest, 8-bit, unpruned
    assert seen(first, widths) == {16} and seen(first, depths) == {2} and seen(first, bits) == {8, 0.0}
    shapes = members(("kernel", "depth"))
    assert {len(step) for step in shapes} == {4} and seen(shapes, depths) == {1, 2} and seen(shapes, widths) == {16}
    assert seen(shapes, bits) == {8, 0.0}
    last = members(supernet_module.PROGRESSIVE[-1])
    assert seen(last, widths) == {8, 16} and seen(last, bits) == {4, 8, 0.0, 0.5}


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("mode", ["joint", pytest.param("nested", marks=pytest.mark.slow)])
def test_a_search_with_the_supernet_trains_it_once_and_reloads_its_designs(tmp_path, data, mode):
    """In both modes (nested is marked slow: the joint case runs the same proxy on the workers, and the nested
    search itself runs in every test run as docs/GUIDE.md's nested-mode block and in test_search's
    test_nested_mode_picks_the_accelerator_an_exhaustive_loop_picks)."""
    from search_spaces.accelerators import AcceleratorSpace
    experiment = codesign.Experiment(
        name="s", run_folder=tmp_path / "run", dataset="digits", network_space=NETWORKS, compression_space=COMPRESSION,
        accelerator_space=AcceleratorSpace(rows=(8, 16), cols=(8,), dataflows=("ws",), rf_bytes=(16,), gb_kib=(32,),
                                           dram_gbps=(16.0,), mac_bits=(8,), zero_skip=(True,)),
        proxy=SupernetProxy(CONFIG), trials=4, seed=0, mode=mode)  # the fixture's: its programs, compiled once
    results = codesign.run(experiment, progress=False)
    assert results.counts(duplicates=False) == {"complete": 4}
    # each run folder holds the one supernet its trials were scored with (also when a worker had it in memory)
    assert len(list((tmp_path / "run" / "accuracy_cache" / "supernets").glob("*.msgpack"))) == 1
    best = codesign.load(tmp_path / "run").pareto_front[0]
    accuracy = float((best.predict(data.x_val, normalised=True) == data.y_val).mean())
    assert accuracy == pytest.approx(best.metrics["accuracy"], abs=1.5 / len(data.y_val))
