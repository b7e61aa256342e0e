"""ONNX export: onnxruntime's logits equal the Flax model's, and the file carries folded batch norm,
integer weight codes (QDQ) and pruned zeros."""

import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from codesign.accuracy.datasets import load_dataset  # noqa: E402
from codesign.results.onnx_export import export_onnx, levels, onnx_model, quantize_kernel  # noqa: E402
from codesign.results import Design  # noqa: E402
from codesign.accuracy.training import TrainConfig, init_variables, train  # noqa: E402
from search_spaces.compression import FLOAT, CompressionPolicy, LayerCompression  # noqa: E402
from search_spaces.flax_models import build_model, quantize_weights  # noqa: E402
from search_spaces.networks import NetworkSpec, Stage, Stem, layer_table  # noqa: E402

#: Float32 tolerance on logits (measured: at most 1e-6 apart, the float rounding of folded batch norm).
#: With quantized activations, a value the two runtimes compute a last bit apart (summation order) can
#: round to the neighbouring code when it sits on a rounding tie; none does on these validation splits.
ATOL = RTOL = 1e-5


def share_within_tolerance(got, want) -> float:
    """The share of images whose logits all agree within the tolerance (the rest: a code flipped at a tie)."""
    return float(np.isclose(got, want, atol=ATOL, rtol=RTOL).all(axis=-1).mean())


def net(name, stem, stages, **kw):
    return NetworkSpec(stem, stages, resolution=8, in_channels=1, num_classes=10, name=name, **kw)


LC = LayerCompression
DESIGNS = {
    # fire + squeezenext (a skip over a concatenation), ceil-mode max pool, SqueezeNet classifier convolution;
    # 8-bit weights and activations, half the weights pruned
    "fire_squeezenext": (net("fs", Stem(3, 1, 8, pool="max3"), (Stage("fire", 1, 8, expansion=0.5),
                                                                 Stage("squeezenext", 2, 8)), head="conv"),
                         CompressionPolicy.uniform(8, 8, 0.5)),
    # depthwise separable, inverted residual (identity skip), residual (projection); 2-16 bit widths and
    # channel pruning by stage
    "dwsep_inverted_residual": (net("dir", Stem(3, 1, 8), (Stage("dwsep", 1, 16, stride=2),
                                                            Stage("inverted", 2, 16, expansion=2.0),
                                                            Stage("residual", 1, 24, stride=2))),
                                CompressionPolicy(LC(8, 8), {"s0": LC(4, 4), "s1": LC(6, 16, 0.5, "channel"),
                                                             "s2": LC(16, 8, 0.5, "channel"), "head": LC(3, 6)})),
    # grouped convolution, AlexNet head (a fully connected layer flattening a 4x4 map); only fc0 compressed
    "grouped_fc3": (net("gfc", Stem(3, 1, 8), (Stage("conv", 1, 8, groups=2, stride=2),), head="fc3",
                        head_widths=(16,)), CompressionPolicy(layers={"fc0": LC(5, 8, 0.25)})),
    # no compression at all: batch norm folding only
    "float": (net("fl", Stem(3, 1, 8), (Stage("residual", 1, 8, stride=2),), head="fc3"), None),
}


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


@pytest.fixture(scope="module")
def trained(data):
    """Each design trained for an epoch (batch statistics, activation ranges and masks are real) and its
    Flax logits function."""
    out = {}
    for key, (spec, policy) in DESIGNS.items():
        outcome = train(spec, policy, data, TrainConfig(epochs=1))
        model = build_model(spec, policy)
        out[key] = (spec, policy, outcome, jax.jit(lambda v, x, m=model: m.apply(v, x, train=False)))
    return out


def onnx_logits(model_or_path, images):
    source = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": np.ascontiguousarray(images)})[0]


def raw(data, x):
    """Images as they were before the dataset normalised them."""
    return x * np.float32(data.std) + np.float32(data.mean)


@pytest.mark.parametrize("key", DESIGNS)
def test_onnxruntime_logits_equal_the_flax_models_and_accuracy_the_stored_one(key, trained, data, tmp_path):
    spec, policy, outcome, flax_logits = trained[key]
    path = export_onnx(spec, policy, outcome.weights, tmp_path / "model.onnx", data.spec)
    got = onnx_logits(path, raw(data, data.x_val))  # the graph normalises raw images itself
    want = np.asarray(flax_logits(outcome.weights, data.x_val))
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    assert (got.argmax(-1) == data.y_val).mean() == outcome.score
    model = onnx_model(spec, policy, outcome.weights, layout="nchw")  # without data: normalised images in
    np.testing.assert_allclose(onnx_logits(model, data.x_val.transpose(0, 3, 1, 2)), want, atol=ATOL, rtol=RTOL)
    model = onnx_model(spec, policy, outcome.weights)  # NHWC by default, as the Flax model takes them
    beyond = 4.0 * data.x_val  # activations past the calibrated ranges: the codes saturate symmetrically
    assert share_within_tolerance(onnx_logits(model, beyond), np.asarray(flax_logits(outcome.weights, beyond))) > 0.9


def initializers(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def layer_settings(spec, policy):
    rows = layer_table(spec)
    if policy is None:
        return rows, {r.layer.name: LC() for r in rows}
    return rows, policy.settings(rows)


def nchw_layout(kernel):
    return kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T


@pytest.mark.parametrize("key", DESIGNS)
def test_the_file_has_folded_batch_norm_integer_weight_codes_and_activation_qdq(key, trained):
    spec, policy, outcome, _ = trained[key]
    model = onnx_model(spec, policy, outcome.weights)
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops
    assert ops <= {"Conv", "Gemm", "Add", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Concat", "Clip",
                   "QuantizeLinear", "DequantizeLinear", "Sub", "Div", "Transpose"}
    assert model.graph.node[0].op_type == "Transpose"  # NHWC images in, NCHW inside
    assert model.opset_import[0].version == 21
    tensors = initializers(model)
    nodes = {n.output[0]: n for n in model.graph.node}
    rows, settings = layer_settings(spec, policy)
    for row in rows:
        if not row.layer.macs:
            continue
        name, K = row.layer.name, row.layer.K
        setting = settings[name]
        if setting.w_bits == FLOAT:
            assert tensors[f"{name}/weight"].dtype == np.float32
        else:
            codes = tensors[f"{name}/weight_codes"]
            dq = nodes[f"{name}/weight"]
            assert dq.op_type == "DequantizeLinear"
            assert list(dq.input) == [f"{name}/weight_codes", f"{name}/weight_scale"]
            assert {a.name: a.i for a in dq.attribute} == {"axis": 0}
            expected = "int4" if setting.w_bits <= 4 else "int8" if setting.w_bits <= 8 else "int16"
            assert codes.dtype.name == expected and codes.shape[0] == K
            assert np.abs(codes.astype(np.int64)).max() <= levels(setting.w_bits)
            assert tensors[f"{name}/weight_scale"].shape == (K,) and (tensors[f"{name}/weight_scale"] > 0).all()
        quantized_input = f"{name}/input_codes" in nodes
        assert quantized_input == (setting.a_bits != FLOAT)
        if quantized_input:
            assert nodes[f"{name}/input_codes"].op_type == "QuantizeLinear"
            bound = tensors[f"{name}/input_max"]
            np.testing.assert_allclose(bound / tensors[f"{name}/input_scale"], levels(setting.a_bits), rtol=1e-6)


@pytest.mark.parametrize("key", ["fire_squeezenext", "dwsep_inverted_residual", "grouped_fc3"])
def test_pruned_weights_are_exact_zeros(key, trained):
    spec, policy, outcome, _ = trained[key]
    tensors = initializers(onnx_model(spec, policy, outcome.weights))
    rows, settings = layer_settings(spec, policy)
    pruned = [r for r in rows if settings[r.layer.name].pruned]
    assert pruned
    for row in pruned:
        name, setting = row.layer.name, settings[row.layer.name]
        weights = tensors[f"{name}/weight_codes"].astype(np.int64)
        mask = np.asarray(outcome.weights["masks"][name]["kernel"])
        if setting.granularity == "channel":
            gone = mask.reshape(-1, row.layer.K).max(axis=0) == 0
            assert gone.sum() == row.layer.K - max(1, row.layer.K - int(np.floor(row.layer.K * setting.prune_ratio)))
            assert (weights[gone] == 0).all() and (tensors[f"{name}/bias"].reshape(-1)[gone] == 0).all()
        elif row.op == "conv":
            assert (weights[nchw_layout(mask) == 0] == 0).all()
        assert (weights == 0).mean() >= np.floor(mask.size * setting.prune_ratio) / mask.size


def test_negative_batch_norm_scales_flip_the_codes_and_keep_the_logits(trained, data):
    spec, policy, outcome, flax_logits = trained["fire_squeezenext"]
    variables = jax.tree_util.tree_map(np.array, outcome.weights)
    bn = variables["params"]["stem"]["BatchNorm_0"]
    bn["scale"][::2] *= -1.0
    model = onnx_model(spec, policy, variables)
    assert (initializers(model)["stem/weight_scale"] > 0).all()
    np.testing.assert_allclose(onnx_logits(model, data.x_val), np.asarray(flax_logits(variables, data.x_val)),
                               atol=ATOL, rtol=RTOL)


def test_weight_codes_times_scales_are_the_models_fake_quantized_weights():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 6)).astype(np.float32)
    kernel[..., 2] = 0.0  # an all-zero (pruned) channel
    for bits in (2, 4, 8, 16):
        codes, scale = quantize_kernel(kernel, bits)
        np.testing.assert_allclose(codes * scale, np.asarray(quantize_weights(kernel, bits)), rtol=1e-6, atol=1e-7)


def test_design_export_onnx_takes_raw_images(trained, data, tmp_path):
    spec, policy, outcome, flax_logits = trained["grouped_fc3"]
    design = Design(trial=SimpleNamespace(number=7), artifacts=None, data=data.spec)
    design.__dict__["outcome"] = SimpleNamespace(candidate=SimpleNamespace(network=spec, compression=policy),
                                                 metrics={"accuracy": outcome.score})
    design.__dict__["variables"] = outcome.weights
    path = design.export_onnx(tmp_path / "sub" / "design.onnx")
    np.testing.assert_allclose(onnx_logits(path, raw(data, data.x_val)),
                               np.asarray(flax_logits(outcome.weights, data.x_val)), atol=ATOL, rtol=RTOL)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["codesign.layout"] == "nhwc" and props["codesign.input"] == "raw images, normalised in the graph, NHWC float32"
    assert props["codesign.weights"] == f"search's weights (trained by the search's proxy: validation accuracy {outcome.score:.6g})"
    with pytest.raises(ValueError, match="trial 7 has no finalized weights"):
        design.export_onnx(tmp_path / "final.onnx", weights="final")
    assert NetworkSpec.from_json(props["codesign.network"]) == spec
    assert CompressionPolicy.from_json(props["codesign.compression"]) == policy
    design.__dict__["variables"] = None
    with pytest.raises(ValueError, match="no stored weights"):
        design.export_onnx(tmp_path / "none.onnx")


def test_uncalibrated_activation_ranges_are_refused():
    spec, policy = DESIGNS["fire_squeezenext"]
    with pytest.raises(ValueError, match="no calibrated range"):
        onnx_model(spec, policy, init_variables(spec, policy, 0))


def test_without_onnx_the_error_says_what_to_install(monkeypatch, trained, tmp_path):
    spec, policy, outcome, _ = trained["float"]
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(ValueError, match=r'pip install -e "\.\[onnx\]"'):
        export_onnx(spec, policy, outcome.weights, tmp_path / "model.onnx")
