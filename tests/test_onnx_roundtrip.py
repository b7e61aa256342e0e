"""ONNX out and back in: every reference network's Flax model, exported, imports as the network's own workload,
and a trained, compressed design read back from its ONNX file costs what the search stored."""

import jax
import numpy as np
import pytest

pytest.importorskip("onnx")

from codesign.accuracy.datasets import load_dataset  # noqa: E402
from codesign.results.onnx_export import export_onnx  # noqa: E402
from codesign.accuracy.training import TrainConfig, train, variable_shapes  # noqa: E402
from cost_models import Accelerator, evaluate, from_onnx  # noqa: E402
from search_spaces.compression import CompressionPolicy, LayerCompression  # noqa: E402
from search_spaces.networks import NetworkSpec, Stage, Stem  # noqa: E402
from search_spaces.reference import REFERENCE_NETWORKS, reference_network  # noqa: E402

jax.config.update("jax_default_prng_impl", "rbg")
FIELDS = ("name", "kind", "C", "K", "H", "W", "R", "S", "stride", "padding", "groups", "macs", "params")


def random_variables(spec: NetworkSpec) -> dict:
    """Variables of the spec's Flax model without compiling it: shapes from eval_shape, values drawn."""
    rng = np.random.default_rng(0)
    fill = lambda path, s: (np.ones(s.shape, np.float32) if path[-1].key in ("var", "scale")
                            else 0.05 * rng.normal(size=s.shape).astype(np.float32))
    return jax.tree_util.tree_map_with_path(fill, variable_shapes(spec, None))


@pytest.mark.parametrize("name", sorted(REFERENCE_NETWORKS))
def test_every_reference_network_exported_from_flax_imports_as_its_own_workload(name, tmp_path):
    spec = reference_network(name)
    if name == "alexnet":  # 61 M weights at 227x227; a smaller input keeps its layers and halves nothing else
        spec = spec.at_resolution(131)
    path = export_onnx(spec, None, random_variables(spec), tmp_path / f"{name}.onnx")
    imported, own = from_onnx(path), spec.workload()
    assert len(imported) == len(own)
    for a, b in zip(imported, own):
        assert {f: getattr(a, f) for f in FIELDS[1:]} == {f: getattr(b, f) for f in FIELDS[1:]}, (a.name, b.name)


def test_a_trained_compressed_design_read_back_from_onnx_costs_what_was_stored(tmp_path):
    spec = NetworkSpec(Stem(kernel=3, stride=1, width=16), (Stage("dwsep", depth=1, width=32, kernel=3, stride=1),
                                                            Stage("fire", depth=1, width=32, kernel=3, stride=2,
                                                                  expansion=0.25)),
                       head="conv", resolution=8, in_channels=1, num_classes=10, name="small")
    policy = CompressionPolicy(default=LayerCompression(8, 8, prune_ratio=0.5), stages={"stem": LayerCompression(8, 8)})
    data = load_dataset("synthetic")
    trained = train(spec, policy, data, TrainConfig(epochs=1), seed=0)
    path = export_onnx(spec, policy, trained.weights, tmp_path / "small.onnx", data.spec)
    imported, own = from_onnx(path), spec.workload(compression=policy)
    for a, b in zip(imported, own, strict=True):
        assert (a.kind, a.macs, a.params) == (b.kind, b.macs, b.params), a.name
        assert (a.w_bits, a.a_bits) == (b.w_bits, b.a_bits), a.name
        # the file's real sparsity: the pruned half, plus weights the 8-bit codes round to zero
        assert b.w_density - 0.05 <= a.w_density <= b.w_density + 1e-9, (a.name, a.w_density)
    accelerator = Accelerator(rows=16, cols=16, dataflow="flex", zero_skip=False)
    stored, read_back = evaluate(own, accelerator), evaluate(imported, accelerator)
    for mine, theirs in zip(read_back.layers, stored.layers, strict=True):  # without zero skipping density is free
        assert (mine["cycles"], mine["energy_pj"]) == pytest.approx((theirs["cycles"], theirs["energy_pj"]),
                                                                     rel=1e-6), mine["layer"]
    for field in ("latency_s", "energy_pj", "dram_bytes"):
        assert read_back.total[field] == pytest.approx(stored.total[field], rel=1e-6), field
    # with zero skipping the file's extra zeros (rounded-away weights) make it a little cheaper, never dearer
    skipping = Accelerator(rows=16, cols=16, dataflow="flex", zero_skip=True)
    stored, read_back = evaluate(own, skipping), evaluate(imported, skipping)
    assert 0.95 * stored.total["energy_pj"] <= read_back.total["energy_pj"] <= stored.total["energy_pj"] * (1 + 1e-9)
