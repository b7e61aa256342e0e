"""ONNX import (cost_models.onnx_import): models built with onnx.helper in the tests, no downloads.

Every supported op in a small CNN, a depthwise-separable block, a residual block, pruned and
QDQ/QLinear-quantized weights, the unsupported-operator report, the CLI, and equality with the
project's own lowering (NetworkSpec.workload) for networks emitted op by op from their layer table.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from codesign.cli import main  # noqa: E402
from cost_models import Layer, Workload, from_onnx, import_onnx  # noqa: E402
from cost_models.onnx_import import OnnxImportError, UnsupportedOperators  # noqa: E402
from search_spaces.networks import NetworkSpec, Stage, Stem, layer_table  # noqa: E402
from search_spaces.reference import reference_network  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Graph:
    """A small onnx.helper graph builder: named nodes, initializers, one NCHW input."""

    def __init__(self, shape=(1, 3, 32, 32), input_type=TensorProto.FLOAT, seed=0):
        self.nodes, self.inits = [], []
        self.input = helper.make_tensor_value_info("x", input_type, list(shape))
        self.rng = np.random.default_rng(seed)

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, outputs=None, domain="", **attrs):
        outputs = outputs or [name]
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def weight(self, shape, density=1.0):
        w = self.rng.standard_normal(shape).astype(np.float32) + 3.0  # no accidental zeros
        if density < 1.0:
            flat = w.reshape(-1)
            flat[: int(round(flat.size * (1 - density)))] = 0.0
            self.rng.shuffle(flat)
        return w

    def conv(self, x, name, C, K, k, stride=1, pad=None, group=1, bn=True, relu=True, bias=False, weight=None, **attrs):
        kh, kw = (k, k) if isinstance(k, int) else k
        pads = pad if pad is not None and not isinstance(pad, int) else [pad if pad is not None else kh // 2] * 4
        w = self.init(f"{name}.w", self.weight((K, C // group, kh, kw)) if weight is None else weight)
        inputs = [x, w] + ([self.init(f"{name}.b", np.zeros(K, np.float32))] if bias else [])
        if "auto_pad" not in attrs:
            attrs["pads"] = list(pads)
        y = self.node("Conv", inputs, name, strides=[stride, stride], group=group, **attrs)
        if bn:
            params = [self.init(f"{name}.bn.{p}", np.full(K, v, np.float32))
                      for p, v in (("scale", 1), ("bias", 0), ("mean", 0), ("var", 1))]
            y = self.node("BatchNormalization", [y, *params], f"{name}/bn")
        return self.node("Relu", [y], f"{name}/relu") if relu else y

    def gemm(self, x, name, C, K, weight=None):
        w = self.init(f"{name}.w", self.weight((K, C)) if weight is None else weight)
        return self.node("Gemm", [x, w, self.init(f"{name}.b", np.zeros(K, np.float32))], name, transB=1)

    def model(self, *outputs, opset=17, domains=(), check=True):
        graph = helper.make_graph(self.nodes, "test_graph", [self.input],
                                  [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                                  self.inits)
        opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
        model = helper.make_model(graph, opset_imports=opsets)
        if check:  # the test's own model is valid ONNX (outputs typed as inference says, as the checker wants)
            for output, inferred in zip(model.graph.output, onnx.shape_inference.infer_shapes(model).graph.output):
                output.CopyFrom(inferred)
            onnx.checker.check_model(model)
        return model


def shape_of(layer: Layer) -> tuple:
    return (layer.name, layer.kind, layer.C, layer.K, layer.H, layer.W, layer.R, layer.S, layer.stride,
            layer.padding, layer.groups, layer.P, layer.Q)


def small_cnn() -> onnx.ModelProto:
    g = Graph((1, 3, 32, 32))
    y = g.conv("x", "conv1", 3, 8, 3)                                          # conv + BN + ReLU
    y = g.node("MaxPool", [y], "pool1", kernel_shape=[2, 2], strides=[2, 2])    # 16x16
    y = g.conv(y, "grouped", 8, 16, 3, group=4, relu=False)
    y = g.node("Clip", [y, g.init("lo", np.float32(0)), g.init("hi", np.float32(6))], "relu6")
    d = g.conv(y, "dw", 16, 16, 3, stride=2, group=16, bn=False, relu=False, auto_pad="SAME_UPPER")  # 8x8, pads 0/1
    p = g.conv(d, "pw", 16, 16, 1, relu=False)
    a = g.node("Add", [p, d], "add")                                            # residual: eltwise
    s = g.node("Sigmoid", [a], "sigmoid")
    m = g.node("Mul", [a, s], "swish")                                # SiLU, an activation function: absorbed
    m = g.node("Mul", [m, g.init("scale.c", np.full((1, 16, 1, 1), 0.5, np.float32))], "scale")  # absorbed
    m = g.node("Add", [m, g.init("shift.c", np.float32(0.1))], "shift")          # absorbed
    v = g.node("AveragePool", [m], "avgpool", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    c = g.node("Concat", [v, m], "concat", axis=1)                             # 32 channels, absorbed
    r = g.node("ReduceMean", [c, g.init("axes", np.array([2, 3]))], "mean", keepdims=1)  # global pool
    t = g.node("GlobalMaxPool", [c], "gmp")
    u = g.node("GlobalAveragePool", [c], "gap")
    s = g.node("Sum", [r, t, u], "sum")                                        # three activations: two eltwise
    f = g.node("Flatten", [s], "flatten", axis=1)
    f = g.gemm(f, "fc1", 32, 10)
    f = g.node("Relu", [f], "fc1/relu")
    f = g.node("MatMul", [f, g.init("fc2.w", g.weight((10, 5)))], "fc2")
    f = g.node("Softmax", [f], "softmax")
    return g.model(f, opset=18)


def test_every_supported_op_in_a_small_cnn():
    workload = from_onnx(small_cnn(), name="small")
    assert isinstance(workload, Workload) and workload.name == "small"
    expected = [
        ("conv1", "conv", 3, 8, 32, 32, 3, 3, 1, 1, 1, 32, 32),
        ("pool1", "pool", 8, 8, 32, 32, 2, 2, 2, 0, 1, 16, 16),
        ("grouped", "grouped", 8, 16, 16, 16, 3, 3, 1, 1, 4, 16, 16),
        ("dw", "depthwise", 16, 16, 17, 17, 3, 3, 2, 0, 16, 8, 8),  # SAME_UPPER pads 0 before, 1 after: pre-padded
        ("pw", "pointwise", 16, 16, 8, 8, 1, 1, 1, 0, 1, 8, 8),
        ("add", "eltwise", 16, 16, 8, 8, 1, 1, 1, 0, 1, 8, 8),
        ("avgpool", "pool", 16, 16, 8, 8, 3, 3, 1, 1, 1, 8, 8),
        ("mean", "pool", 32, 32, 8, 8, 8, 8, 1, 0, 1, 1, 1),
        ("gmp", "pool", 32, 32, 8, 8, 8, 8, 1, 0, 1, 1, 1),
        ("gap", "pool", 32, 32, 8, 8, 8, 8, 1, 0, 1, 1, 1),
        ("sum", "eltwise", 32, 32, 1, 1, 1, 1, 1, 0, 1, 1, 1),
        ("sum_2", "eltwise", 32, 32, 1, 1, 1, 1, 1, 0, 1, 1, 1),
        ("fc1", "fc", 32, 10, 1, 1, 1, 1, 1, 0, 1, 1, 1),
        ("fc2", "fc", 10, 5, 1, 1, 1, 1, 1, 0, 1, 1, 1),
        ("softmax", "eltwise", 5, 5, 1, 1, 1, 1, 1, 0, 1, 1, 1),  # statistics at run time: one vector pass
    ]
    assert [shape_of(layer) for layer in workload] == expected
    macs = {layer.name: layer.macs for layer in workload if layer.macs}
    assert macs == {"conv1": 32 * 32 * 8 * 27, "grouped": 16 * 16 * 16 * 9 * 2, "dw": 8 * 8 * 16 * 9,
                    "pw": 8 * 8 * 16 * 16, "fc1": 320, "fc2": 50}
    assert {layer.name: layer.params for layer in workload if layer.params} == {
        "conv1": 8 * 27, "grouped": 16 * 2 * 9, "dw": 16 * 9, "pw": 256, "fc1": 320, "fc2": 50}
    assert all(layer.w_bits == layer.a_bits == 16 and layer.w_density == 1.0 for layer in workload)


def test_activation_functions_cost_nothing_however_they_are_spelled():
    """One rule: an activation function adds no layer, one operator or element-wise operators on one tensor (SiLU,
    GELU with Erf, HardSwish spelled out); an element-wise op of two different tensors is an eltwise layer."""
    g = Graph((1, 8, 8, 8))
    y = g.conv("x", "conv", 8, 8, 3, relu=False)
    silu = g.node("Mul", [y, g.node("Sigmoid", [y], "sig")], "silu")
    scaled = g.node("Div", [silu, g.init("sqrt2", np.float32(2 ** 0.5))], "gelu/div")
    erf = g.node("Add", [g.node("Erf", [scaled], "gelu/erf"), g.init("one", np.float32(1))], "gelu/add")
    gelu = g.node("Mul", [g.node("Mul", [silu, erf], "gelu/mul"), g.init("half", np.float32(0.5))], "gelu")
    relu6 = g.node("Clip", [g.node("Add", [gelu, g.init("three", np.float32(3))], "hs/add"),
                            g.init("lo", np.float32(0)), g.init("hi", np.float32(6))], "hs/relu6")
    hswish = g.node("Div", [g.node("Mul", [gelu, relu6], "hs/mul"), g.init("six", np.float32(6))], "hswish")
    se = g.node("Sigmoid", [g.conv(g.node("GlobalAveragePool", [hswish], "se/pool"), "se/fc", 8, 8, 1, bn=False,
                                   relu=False)], "se/gate")
    excited = g.node("Mul", [hswish, se], "se/mul")                       # two tensors: an eltwise layer
    out = g.node("Add", [excited, y], "residual")                          # two tensors: an eltwise layer
    layers = from_onnx(g.model(out))
    assert [(layer.name, layer.kind) for layer in layers] == [
        ("conv", "conv"), ("se/pool", "pool"), ("se/fc", "pointwise"), ("se/mul", "eltwise"), ("residual", "eltwise")]


def test_symbolic_batch_and_a_flatten_computed_from_the_shape():
    g = Graph(("N", 3, 16, 16))
    y = g.conv("x", "conv", 3, 8, 3)
    batch = g.node("Gather", [g.node("Shape", [y], "shape"), g.init("zero", np.array(0))], "batch", axis=0)
    batch = g.node("Unsqueeze", [batch, g.init("axis0", np.array([0]))], "batch1")
    size = g.node("Concat", [batch, g.init("rest", np.array([-1]))], "size", axis=0)
    y = g.gemm(g.node("Reshape", [y, size], "flatten"), "fc", 8 * 16 * 16, 10)
    model = g.model(y)
    inferred = onnx.shape_inference.infer_shapes(model)  # the file's own shapes keep the symbolic batch
    for m in (model, inferred):
        assert [shape_of(layer) for layer in from_onnx(m)] == [
            ("conv", "conv", 3, 8, 16, 16, 3, 3, 1, 1, 1, 16, 16), ("fc", "fc", 2048, 10, 1, 1, 1, 1, 1, 0, 1, 1, 1)]


def test_depthwise_separable_block_and_padding_forms():
    g = Graph((1, 8, 16, 16))
    y = g.conv("x", "dw", 8, 8, 3, stride=2, group=8)
    y = g.conv(y, "pw", 8, 24, 1)
    y = g.conv(y, "valid", 24, 24, 3, group=24, auto_pad="VALID", bn=False)
    y = g.conv(y, "lower", 24, 24, 2, auto_pad="SAME_LOWER", bn=False)         # pads 1 before, 0 after
    y = g.conv(y, "kx1", 24, 12, (3, 1), pad=[1, 0, 1, 0], bn=False)           # k x 1: pads differ along H and W
    workload = from_onnx(g.model(y))
    assert [shape_of(layer) for layer in workload] == [
        ("dw", "depthwise", 8, 8, 16, 16, 3, 3, 2, 1, 8, 8, 8),
        ("pw", "pointwise", 8, 24, 8, 8, 1, 1, 1, 0, 1, 8, 8),
        ("valid", "depthwise", 24, 24, 8, 8, 3, 3, 1, 0, 24, 6, 6),
        ("lower", "conv", 24, 24, 7, 7, 2, 2, 1, 0, 1, 6, 6),
        ("kx1", "conv", 24, 12, 8, 6, 3, 1, 1, 0, 1, 6, 6),
    ]
    assert [layer.macs for layer in workload] == [8 * 8 * 8 * 9, 8 * 8 * 24 * 8, 36 * 24 * 9, 36 * 24 * 24 * 4,
                                                  36 * 12 * 24 * 3]


def test_residual_block_is_an_eltwise_add():
    g = Graph((1, 16, 8, 8))
    y = g.conv("x", "conv1", 16, 16, 3)
    y = g.conv(y, "conv2", 16, 16, 3, relu=False)
    y = g.node("Add", [y, "x"], "add")
    y = g.node("Relu", [y], "add/relu")
    workload = from_onnx(g.model(y))
    assert [(layer.name, layer.kind) for layer in workload] == [("conv1", "conv"), ("conv2", "conv"), ("add", "eltwise")]
    assert shape_of(workload.layers[2]) == ("add", "eltwise", 16, 16, 8, 8, 1, 1, 1, 0, 1, 8, 8)
    assert workload.macs == 2 * 64 * 16 * 16 * 9 and workload.params == 2 * 16 * 16 * 9


def test_pruned_weights_give_the_exact_density():
    g = Graph((1, 4, 8, 8))
    w1 = g.weight((16, 4, 3, 3), density=0.25)   # 576 weights, 432 zeros
    w2 = g.weight((10, 16 * 64), density=0.1)
    y = g.conv("x", "conv", 4, 16, 3, weight=w1)
    y = g.node("Flatten", [y], "flatten", axis=1)
    y = g.gemm(y, "fc", 16 * 64, 10, weight=w2)
    z = g.conv("x", "dead", 4, 4, 1, weight=np.zeros((4, 4, 1, 1), np.float32), bn=False)  # all zero: one non-zero
    layers = {layer.name: layer for layer in from_onnx(g.model(y, z))}
    assert layers["conv"].w_density == np.count_nonzero(w1) / w1.size == 0.25
    assert layers["fc"].w_density == np.count_nonzero(w2) / w2.size
    assert layers["dead"].w_density == 1 / 16


def test_a_sequence_first_projection_counts_every_token():
    """PyTorch exports attention's projections on (tokens, batch, features) and (tokens, features): every token is
    a row of the weight's work (10 tokens x 128 x 128 MACs each), not one row per sample."""
    g = Graph(("N", 10, 128))  # batch first, symbolic: the model's batch is 1
    seq_first = g.node("Transpose", ["x"], "to_seq_first", perm=[1, 0, 2])  # (10, N, 128)
    q = g.node("MatMul", [seq_first, g.init("q.w", g.weight((128, 128)))], "q_proj")
    flat = g.node("Reshape", [q, g.init("shape", np.array([10, 128], np.int64))], "tokens")  # (10, 128)
    v = g.gemm(flat, "v_proj", 128, 128)
    batch_first = g.node("MatMul", ["x", g.init("o.w", g.weight((128, 64)))], "o_proj")  # (N, 10, 128): 10 rows
    layers = {layer.name: layer for layer in from_onnx(g.model(v, batch_first))}
    for name, K in (("q_proj", 128), ("v_proj", 128), ("o_proj", 64)):
        assert layers[name].macs == 10 * 128 * K, name
        assert (layers[name].kind, layers[name].H, layers[name].W) == ("pointwise", 10, 1), name


def attention_model(quantized: bool = False) -> onnx.ModelProto:
    """One self-attention layer as PyTorch exports it (batch first, 10 tokens of 64 features, 4 heads of 16):
    projections by weights, then the scores ``q x k^T`` and their product with ``v``, MatMuls of two activations
    on ``(batch, heads, tokens, 16)``; ``quantized``: ``k`` through a QuantizeLinear/DequantizeLinear pair (8 bits)."""
    g = Graph((1, 10, 64))
    heads = g.init("heads", np.array([1, 10, 4, 16], np.int64))

    def split_heads(name, perm):
        y = g.node("MatMul", ["x", g.init(f"{name}.w", g.weight((64, 64)))], name)
        return g.node("Transpose", [g.node("Reshape", [y, heads], f"{name}/heads")], f"{name}/t", perm=perm)

    q, k_t, v = split_heads("q", [0, 2, 1, 3]), split_heads("k", [0, 2, 3, 1]), split_heads("v", [0, 2, 1, 3])
    if quantized:
        scale, zero = g.init("k.scale", np.array(0.1, np.float32)), g.init("k.zero", np.array(0, np.int8))
        k_t = g.node("DequantizeLinear", [g.node("QuantizeLinear", [k_t, scale, zero], "k/q"), scale, zero], "k/dq")
    scores = g.node("MatMul", [q, k_t], "scores")                       # (1, 4, 10, 10)
    weights = g.node("Softmax", [scores], "softmax", axis=-1)
    out = g.node("MatMul", [weights, v], "context")                     # (1, 4, 10, 16)
    merged = g.node("Reshape", [g.node("Transpose", [out], "merge/t", perm=[0, 2, 1, 3]),
                                g.init("tokens", np.array([1, 10, 64], np.int64))], "merge")
    return g.model(g.node("MatMul", [merged, g.init("o.w", g.weight((64, 64)))], "o"))


def test_attention_scores_are_layers_with_an_operand_computed_at_run_time(tmp_path):
    """Q x K^T and its product with V: one group per head, MACs as torchvision counts them (heads x tokens x
    head size x tokens each), the second operand in the weight's place but not in the model's weights or size;
    costed, and carried through the SCALE-Sim topology and JSON."""
    from codesign.metrics import model_size_kib
    from cost_models import Accelerator, evaluate
    from cost_models.scalesim import format_topology, parse_topology

    workload = from_onnx(attention_model())
    layers = {layer.name: layer for layer in workload}
    assert list(layers) == ["q", "k", "v", "scores", "softmax", "context", "o"]
    assert (layers["softmax"].kind, layers["softmax"].C, layers["softmax"].H) == ("eltwise", 4, 10)
    for name, (C, K) in (("scores", (4 * 16, 4 * 10)), ("context", (4 * 10, 4 * 16))):
        layer = layers[name]
        assert (layer.kind, layer.groups, layer.C, layer.K, layer.H, layer.W) == ("grouped", 4, C, K, 10, 1), name
        assert layer.macs == 4 * 10 * 16 * 10 and layer.params == 0 and layer.w_source == "activation", name
    assert workload.macs == 4 * 10 * 64 * 64 + 2 * 4 * 10 * 16 * 10
    assert workload.params == 4 * 64 * 64  # the projections' weights only
    assert model_size_kib(workload) == 4 * 64 * 64 * 16 / 8 / 1024
    report = evaluate(workload, Accelerator())
    scores = next(row for row in report.to_dict()["layers"] if row["layer"] == "scores")
    assert scores["macs"] == 4 * 10 * 16 * 10 and 0 < scores["cycles"] < float("inf") and scores["energy_pj"] > 0
    assert parse_topology(format_topology(workload)).layers == workload.layers
    assert Workload.from_json(workload.to_json()) == workload
    quantized = {layer.name: layer for layer in from_onnx(attention_model(quantized=True))}
    assert (quantized["scores"].w_bits, quantized["scores"].a_bits) == (8, 16)


@pytest.mark.parametrize("scores, context", [("bhid,bhjd->bhij", "bhij,bhjd->bhid"),
                                             ("...id,...jd->...ij", "...ij,...jd")])  # implicit output: ...id
def test_attention_written_as_einsum_is_the_same_layers(scores, context):
    """MaxViT writes attention with torch.einsum: the same groups, rows, contraction and MACs as the MatMuls; an
    Einsum with a constant operand is a layer with that weight."""
    g = Graph((1, 10, 64))
    project = g.node("Einsum", ["x", g.init("w", g.weight((64, 64)))], "project", equation="bnc,cd->bnd")
    heads = g.node("Transpose", [g.node("Reshape", [project, g.init("shape", np.array([1, 10, 4, 16], np.int64))],
                                        "split")], "heads", perm=[0, 2, 1, 3])          # (1, 4, 10, 16)
    s = g.node("Einsum", [heads, heads], "scores", equation=scores)                    # (1, 4, 10, 10)
    out = g.node("Einsum", [g.node("Softmax", [s], "softmax", axis=-1), heads], "context", equation=context)
    layers = {layer.name: layer for layer in from_onnx(g.model(out))}
    assert (layers["project"].kind, layers["project"].C, layers["project"].K, layers["project"].H) == (
        "pointwise", 64, 64, 10)
    assert layers["project"].params == 64 * 64 and layers["project"].w_source == "constant"
    for name in ("scores", "context"):
        layer = layers[name]
        assert (layer.kind, layer.groups, layer.H, layer.w_source) == ("grouped", 4, 10, "activation"), name
        assert layer.macs == 4 * 10 * 16 * 10 and layer.params == 0, name


def test_an_einsum_that_is_not_a_product_of_two_is_listed_unsupported():
    g = Graph((1, 8, 8))
    fc = g.node("MatMul", ["x", g.init("w", g.weight((8, 8)))], "fc")
    trace = g.node("Einsum", ["x"], "trace", equation="bii->b")
    three = g.node("Einsum", ["x", "x", "x"], "three", equation="bij,bjk,bkl->bil")
    alone = g.node("Einsum", ["x", "x"], "alone", equation="bij,bkl->bi")                # sums j of one operand
    report = import_onnx(g.model(fc, trace, three, alone), skip_unsupported=True)
    assert report.workload.names == ("fc",)
    assert report.skipped_counts == {"Einsum (1 operands; only products of two are modelled)": 1,
                                     "Einsum (3 operands; only products of two are modelled)": 1,
                                     "Einsum (equation 'bij,bkl->bi' sums an index of one operand alone)": 1}


def test_shapes_computed_block_after_block_are_followed_to_the_last_layer():
    """A Swin transformer's windows, as torch.onnx exports them: each block pads its map by an amount computed
    from constants ((window - H % window) % window through Mod, Sub, Concat, ConstantOfShape, Cast), then cuts it
    into windows with a Reshape whose target comes from the padded map's Shape. The second block's input shape is
    known only once the first block's is, so folding and shape inference repeat until nothing is new."""
    g = Graph((1, 6, 6, 8))
    const = lambda name, value: g.init(name, np.array(value, np.int64))

    def block(x, n, size):
        pad = g.node("Mod", [g.node("Sub", [const(f"w{n}", 4), g.node("Mod", [const(f"h{n}", size), const(f"w{n}b", 4)],
                                                                        f"hmod{n}")], f"sub{n}"), const(f"w{n}c", 4)],
                     f"pad{n}")
        zeros = g.node("ConstantOfShape", [const(f"five{n}", [5])], f"zeros{n}",
                       value=helper.make_tensor("v", TensorProto.INT64, [1], [0]))
        one = lambda name, x: g.node("Unsqueeze", [x, const(f"{name}.axis", [0])], name)
        pads = g.node("Concat", [const(f"z{n}", [0]), one(f"pb{n}", pad), one(f"pr{n}", pad), zeros], f"pads{n}",
                      axis=0)
        padded = g.node("Pad", [x, g.node("Cast", [pads], f"cast{n}", to=TensorProto.INT64)], f"padded{n}")
        shape = g.node("Shape", [padded], f"shape{n}")
        side = lambda i: g.node("Gather", [shape, const(f"i{n}{i}", i)], f"side{n}{i}", axis=0)
        count = g.node("Div", [g.node("Mul", [side(1), side(2)], f"area{n}"), const(f"sixteen{n}", 16)], f"count{n}")
        target = g.node("Concat", [one(f"count{n}u", count), const(f"win{n}", [16, 8])], f"target{n}", axis=0)
        windows = g.node("Reshape", [padded, target], f"windows{n}")                     # (count, 16, 8)
        return g.node("MatMul", [windows, g.init(f"fc{n}.w", g.weight((8, 8)))], f"fc{n}")

    first = block("x", 0, 6)                                                                # (4, 16, 8)
    shape = g.node("Shape", [first], "first_shape")
    side = g.node("Gather", [shape, const("zero", 0)], "first_count", axis=0)
    rows = g.node("Mul", [side, const("four", 4)], "rows")                                  # 16
    back = g.node("Reshape", [first, g.node("Concat", [const("one", [1]), g.node("Unsqueeze", [
        g.node("Div", [rows, const("two", 2)], "half"), const("ax", [0])], "halfu"), const("rest", [8, 8])],
                                            "back_target", axis=0)], "back")               # (1, 8, 8, 8)
    report = import_onnx(g.model(block(back, 1, 8), check=False))
    layers = {layer.name: layer for layer in report.workload}
    assert report.skipped == ()
    assert (layers["fc0"].H, layers["fc1"].H) == (64, 64) and layers["fc1"].macs == 64 * 8 * 8


def test_a_vector_norm_over_the_features_is_one_pass_over_its_input():
    """Swin V2's cosine attention normalises q as F.normalize exports it (ReduceL2 over the features, Clip,
    Expand, Div): the norm is one element-wise pass over q, the division an element-wise layer of two tensors,
    the broadcast a view; a ReduceMean over H and W stays a global pool."""
    g = Graph((1, 4, 10, 16))
    norm = g.node("ReduceL2", ["x", g.init("last", np.array([-1], np.int64))], "norm", keepdims=1)   # (1, 4, 10, 1)
    wide = g.node("Expand", [g.node("Clip", [norm, g.init("eps", np.array(1e-12, np.float32))], "clip"),
                             g.init("to", np.array([1, 4, 10, 16], np.int64))], "wide")
    unit = g.node("Div", ["x", wide], "unit")
    scores = g.node("MatMul", [unit, g.node("Transpose", [unit], "unit_t", perm=[0, 1, 3, 2])], "scores")
    pooled = g.node("ReduceMean", [unit, g.init("hw", np.array([2, 3], np.int64))], "pooled", keepdims=1)
    layers = {layer.name: layer for layer in from_onnx(g.model(scores, pooled, opset=18))}
    assert [(n, layers[n].kind) for n in layers] == [("norm", "eltwise"), ("unit", "eltwise"), ("scores", "grouped"),
                                                     ("pooled", "pool")]
    assert (layers["norm"].C, layers["norm"].H, layers["norm"].W) == (4, 10, 16)


def test_a_layer_says_where_its_second_operand_comes_from():
    with pytest.raises(ValueError, match="field 'w_source' must be one of constant, activation, got 'weights'"):
        Layer("l", "fc", 8, 8, 1, 1, w_source="weights")
    with pytest.raises(ValueError, match="'w_source' is 'activation' but a pool layer has no second operand"):
        Layer("p", "pool", 8, 8, 4, 4, R=2, stride=2, w_source="activation")


def test_a_classifier_on_a_concrete_batch_stays_one_row_per_sample():
    g = Graph((4, 3, 8, 8))  # exported with a batch of 4
    y = g.node("Flatten", [g.conv("x", "conv", 3, 8, 3)], "flatten", axis=1)
    layers = {layer.name: layer for layer in from_onnx(g.model(g.gemm(y, "fc", 8 * 64, 10)))}
    assert (layers["fc"].kind, layers["fc"].macs) == ("fc", 8 * 64 * 10)


@pytest.mark.parametrize("chunk", ["slice", "split"])
def test_a_chunk_of_channels_keeps_the_layers_after_it(chunk):
    """ShuffleNet v2's ``chunk``: a Slice whose end is computed from the shape at run time (Shape -> Gather -> Div,
    as torch.onnx exports it) or a Split (the dynamo exporter's). Both halves are views; the branch after them is
    costed on its 8 channels."""
    g = Graph(("N", 16, 8, 8))
    y = g.conv("x", "conv0", 16, 16, 1)
    if chunk == "split":
        first, second = "half_a", "half_b"
        g.node("Split", [y], "split", outputs=[first, second], axis=1, num_outputs=2)
    else:
        channels = g.node("Gather", [g.node("Shape", [y], "shape"), g.init("one", np.array(1, np.int64))], "channels",
                          axis=0)
        end = g.node("Unsqueeze", [g.node("Div", [channels, g.init("two", np.array(2, np.int64))], "half"),
                                   g.init("ax0", np.array([0], np.int64))], "end")
        axis = g.init("axis1", np.array([1], np.int64))
        first = g.node("Slice", [y, g.init("zero", np.array([0], np.int64)), end, axis], "first")
        second = g.node("Slice", [y, end, g.init("max", np.array([2**62], np.int64)), axis], "second")
    branch = g.conv(second, "branch", 8, 8, 3)
    out = g.node("Concat", [first, branch], "cat", axis=1)
    report = import_onnx(g.model(out, opset=18, check=False))
    assert report.skipped == ()
    assert [(layer.name, layer.C, layer.K, layer.H, layer.P) for layer in report.workload] == [
        ("conv0", 16, 16, 8, 8), ("branch", 8, 8, 8, 8)]


def test_a_transformer_blocks_norms_and_class_token_import():
    """LayerNormalization is one element-wise pass over its input; Gather of the class token is a view; an
    embedding table read by index is listed as not modelled."""
    g = Graph((1, 10, 64))
    ln = g.node("LayerNormalization", ["x", g.init("ln.scale", np.ones(64, np.float32)),
                                       g.init("ln.bias", np.zeros(64, np.float32))], "ln", axis=-1)
    mlp = g.node("MatMul", [ln, g.init("mlp.w", g.weight((64, 64)))], "mlp")
    token = g.node("Gather", [mlp, g.init("first", np.array(0, np.int64))], "class_token", axis=1)  # (1, 64)
    head = g.gemm(token, "head", 64, 10)
    ids = g.node("Cast", ["x"], "ids", to=TensorProto.INT64)
    embedded = g.node("Gather", [g.init("embedding", g.weight((100, 64))), ids], "embedding_lookup", axis=0)
    report = import_onnx(g.model(head, embedded, opset=18, check=False), skip_unsupported=True)
    layers = {layer.name: layer for layer in report.workload}
    assert (layers["ln"].kind, layers["ln"].C * layers["ln"].H * layers["ln"].W) == ("eltwise", 10 * 64)
    assert layers["mlp"].macs == 10 * 64 * 64 and layers["head"].macs == 64 * 10
    assert "class_token" not in layers
    assert report.skipped_counts == {"Gather (a table read by index (an embedding lookup))": 1}


def test_a_model_saved_apart_from_its_weights_imports_with_dense_weights_and_a_warning(tmp_path):
    """ONNX's external data: with the weights' file the densities are read from it; without it (a model shared
    for its shapes, as ZigZag's ResNet-18) the shapes and bits are imported and every density is 1, with a
    warning naming the missing file."""
    g = Graph((1, 4, 8, 8))
    w1 = g.weight((16, 4, 3, 3), density=0.25)
    y = g.conv("x", "conv", 4, 16, 3, weight=w1)
    onnx.save(g.model(y), tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.weights", size_threshold=0)
    assert (tmp_path / "m.weights").is_file()
    with_weights = from_onnx(tmp_path / "m.onnx")
    assert with_weights.layers[0].w_density == 0.25
    (tmp_path / "m.weights").unlink()
    with pytest.warns(UserWarning, match=r"m\.onnx: its weights are kept in m\.weights, which is not there: .*"
                                         r"every weight density is taken as 1"):
        shapes_only = from_onnx(tmp_path / "m.onnx")
    assert shape_of(shapes_only.layers[0]) == shape_of(with_weights.layers[0])
    assert shapes_only.layers[0].w_density == 1.0 and shapes_only.macs == with_weights.macs


def qdq(g, x, name, elem_type=TensorProto.INT8, zero=0):
    """QuantizeLinear then DequantizeLinear of an activation (per tensor)."""
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    scale, zp = g.init(f"{name}.s", np.float32(0.1)), g.init(f"{name}.zp", np.array(zero, dtype))
    q = g.node("QuantizeLinear", [x, scale, zp], f"{name}/q")
    return g.node("DequantizeLinear", [q, scale, zp], f"{name}/dq")


def quantized_weight(g, name, values, elem_type, zero=0, axis=0):
    """An integer initializer into a per-channel DequantizeLinear."""
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    K = values.shape[0]
    q = g.init(f"{name}.q", values.astype(dtype))
    scale, zp = g.init(f"{name}.ws", np.full(K, 0.01, np.float32)), g.init(f"{name}.wzp", np.full(K, zero, dtype))
    return g.node("DequantizeLinear", [q, scale, zp], f"{name}/wdq", axis=axis)


def test_qdq_quantized_model_bits_and_density():
    g = Graph((1, 8, 8, 8))
    w8 = np.arange(16 * 8 * 9).reshape(16, 8, 3, 3) % 7 - 3                # int8, zeros where the value is 0
    w4 = np.arange(16 * 16).reshape(16, 16, 1, 1) % 5 - 2                   # int4
    wu = (np.arange(10 * 16 * 64).reshape(10, 16 * 64) % 4) + 126           # uint8 around zero point 128
    x = qdq(g, "x", "in")
    y = g.node("Conv", [x, quantized_weight(g, "c8", w8, TensorProto.INT8)], "conv8", pads=[1, 1, 1, 1])
    y = g.node("Relu", [y], "relu")
    y = qdq(g, y, "mid", TensorProto.UINT8, zero=128)
    y = g.node("Conv", [y, quantized_weight(g, "c4", w4, TensorProto.INT4)], "conv4")
    y = qdq(g, y, "out")
    y = g.node("Flatten", [y], "flatten", axis=1)                          # a view between the DQ and the Gemm
    wf = g.weight((5, 16 * 64), density=0.5)                                # float weight quantized in the graph
    wq = qdq(g, g.init("fcf.w", wf), "fcf.wq")
    f = g.node("Gemm", [y, wq], "fc_float_weight", transB=1)
    u = g.node("Gemm", [y, quantized_weight(g, "fcu", wu, TensorProto.UINT8, zero=128)], "fc_uint8", transB=1)
    layers = {layer.name: layer for layer in from_onnx(g.model(f, u, opset=21))}
    conv8, conv4 = layers["conv8"], layers["conv4"]
    assert (conv8.w_bits, conv8.a_bits, conv8.w_density) == (8, 8, np.count_nonzero(w8) / w8.size)
    assert (conv4.w_bits, conv4.a_bits, conv4.w_density) == (4, 8, np.count_nonzero(w4) / w4.size)
    fcf = layers["fc_float_weight"]
    assert (fcf.w_bits, fcf.a_bits, fcf.w_density, fcf.C, fcf.K) == (8, 8, 0.5, 1024, 5)
    fcu = layers["fc_uint8"]
    assert (fcu.w_bits, fcu.a_bits, fcu.w_density) == (8, 8, np.count_nonzero(wu != 128) / wu.size)


def test_qlinear_conv_and_integer_ops_take_their_bits_from_the_input_types():
    g = Graph((1, 8, 8, 8), input_type=TensorProto.UINT8)
    w = (np.arange(16 * 8 * 9).reshape(16, 8, 3, 3) % 3 - 1).astype(np.int8)  # a third zeros
    inputs = ["x", g.init("xs", np.float32(0.1)), g.init("xzp", np.uint8(128)), g.init("w", w),
              g.init("ws", np.full(16, 0.01, np.float32)), g.init("wzp", np.zeros(16, np.int8)),
              g.init("ys", np.float32(0.1)), g.init("yzp", np.uint8(128))]
    y = g.node("QLinearConv", inputs, "qconv", pads=[1, 1, 1, 1])
    p = g.node("MaxPool", [y], "qpool", kernel_shape=[2, 2], strides=[2, 2])   # reads the uint8 map
    ci = g.node("ConvInteger", [p, g.init("w2", np.ones((4, 16, 1, 1), np.int8)), g.init("x2zp", np.uint8(128))],
                "convint")
    layers = {layer.name: layer for layer in from_onnx(g.model(ci, opset=13))}
    assert shape_of(layers["qconv"]) == ("qconv", "conv", 8, 16, 8, 8, 3, 3, 1, 1, 1, 8, 8)
    assert (layers["qconv"].w_bits, layers["qconv"].a_bits) == (8, 8)
    assert layers["qconv"].w_density == np.count_nonzero(w) / w.size
    assert (layers["qpool"].kind, layers["qpool"].a_bits) == ("pool", 8)
    assert (layers["convint"].kind, layers["convint"].w_bits, layers["convint"].a_bits) == ("pointwise", 8, 8)


def test_onnx_runtimes_qoperator_ops_read_like_their_qdq_equivalents():
    """A ResNet block as ONNX Runtime's quantizer writes it in the QOperator format: QLinearConv (standard),
    then com.microsoft QLinearAdd, QLinearGlobalAveragePool and QGemm, whose shapes ONNX's inference does not
    know; every layer after them is still imported, 8-bit, with the weights' density."""
    g = Graph((1, 8, 8, 8), input_type=TensorProto.UINT8)
    scale, zero = g.init("s", np.float32(0.1)), g.init("zp", np.uint8(128))

    def qconv(x, name, pad):
        w = g.init(f"{name}.w", (np.arange(8 * 8 * 9).reshape(8, 8, 3, 3) % 3 - 1).astype(np.int8))
        return g.node("QLinearConv", [x, scale, zero, w, g.init(f"{name}.ws", np.full(8, 0.01, np.float32)),
                                      g.init(f"{name}.wzp", np.zeros(8, np.int8)), scale, zero], name,
                      pads=[pad] * 4)

    y = qconv(qconv("x", "conv1", 1), "conv2", 1)
    ms = {"domain": "com.microsoft"}
    added = g.node("QLinearAdd", [y, scale, zero, "x", scale, zero, scale, zero], "add", **ms)
    z = qconv(added, "conv3", 1)                                   # needs QLinearAdd's shape
    pooled = g.node("QLinearGlobalAveragePool", [z, scale, zero, scale, zero], "gap", channels_last=0, **ms)
    flat = g.node("Flatten", [pooled], "flatten", axis=1)
    fc_w = g.init("fc.w", np.eye(10, 8, dtype=np.int8))
    out = g.node("QGemm", [flat, scale, zero, fc_w, g.init("fc.ws", np.float32(0.02)), g.init("fc.wzp", np.int8(0)),
                           g.init("fc.b", np.zeros(10, np.int32)), scale, zero], "fc", transB=1, **ms)
    out = g.node("QLinearSoftmax", [out, scale, zero, scale, zero], "softmax", axis=-1, opset=13, **ms)
    report = import_onnx(g.model(out, opset=13, domains=("com.microsoft",), check=False))
    assert report.skipped == ()
    layers = {layer.name: layer for layer in report.workload}
    assert [(n, layers[n].kind) for n in layers] == [("conv1", "conv"), ("conv2", "conv"), ("add", "eltwise"),
                                                     ("conv3", "conv"), ("gap", "pool"), ("fc", "fc"),
                                                     ("softmax", "eltwise")]  # as Softmax: one vector pass
    assert all(layer.a_bits == 8 for layer in layers.values())
    assert (layers["fc"].C, layers["fc"].K, layers["fc"].w_bits, layers["fc"].w_density) == (8, 10, 8, 0.1)
    assert (layers["gap"].C, layers["gap"].H) == (8, 8) and layers["conv3"].w_density == pytest.approx(2 / 3, 0.01)


def unsupported_model() -> onnx.ModelProto:
    g = Graph((1, 4, 8, 8))
    y = g.conv("x", "conv1", 4, 8, 3)
    y = g.node("LRN", [y], "lrn_a", size=3)
    y = g.node("LRN", [y], "lrn_b", size=3)
    z = g.node("Conv", [y, y], "dynamic")                                    # a weight computed at run time
    y = g.node("Custom", [y], "custom_0", domain="com.example")              # shape inference knows nothing
    y = g.conv(y, "conv2", 8, 8, 1, bn=False)                                # so its input shape is unknown
    w = g.conv(z, "conv3", 1, 8, 1, bn=False)
    return g.model(y, w, domains=("com.example",), check=False)


def test_unsupported_operators_are_listed_in_one_report_or_skipped_and_recorded():
    model = unsupported_model()
    with pytest.raises(UnsupportedOperators) as error:
        from_onnx(model)
    message = str(error.value)
    assert message.startswith("test_graph: 5 operators the cost model does not model: ")
    for part in ("LRN x2 (lrn_a, lrn_b)", "Conv (weight computed at run time) x1 (dynamic)", "com.example:Custom x1 (custom_0)",
                 "Conv (no inferred shape for its input) x1 (conv2)", "skip_unsupported=True (--skip-unsupported)"):
        assert part in message
    assert isinstance(error.value, ValueError)
    report = import_onnx(model, skip_unsupported=True)
    assert report.workload.names == ("conv1", "conv3")
    assert report.skipped_counts == {"LRN": 2, "Conv (weight computed at run time)": 1, "com.example:Custom": 1,
                                     "Conv (no inferred shape for its input)": 1}
    assert report.summary().startswith("skipped: 5 nodes not in these totals: LRN x2 (lrn_a, lrn_b)")


def test_cli_cost_and_network_on_onnx(tmp_path, capsys):
    path = tmp_path / "net.onnx"
    onnx.save(unsupported_model(), path)
    assert main(["cost", "--onnx", str(path), "--compute-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LRN x2 (lrn_a, lrn_b)" in err and "--skip-unsupported" in err
    assert main(["cost", "--onnx", str(path), "--skip-unsupported", "--compute-only"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("skipped: 5 nodes not in these totals: LRN x2") and out[-4].startswith("total")
    assert out[-2] == "energy priced by the eyeriss table"
    assert main(["network", str(path), "--skip-unsupported"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "conv3" in out and "skipped: 5 nodes" in out
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf \xff\xff")
    assert main(["network", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codesign: error: {bad}: not a readable ONNX model") and err.count("\n") == 1
    assert main(["cost", "--onnx", str(tmp_path / "missing.onnx")]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # exactly one of --topology / --onnx
        main(["cost", "--onnx", str(path), "--topology", "t.csv"])


def test_import_without_onnx_is_a_clear_error():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import cost_models\n"
            "try:\n    cost_models.Workload.from_onnx('m.onnx')\n"
            "except ValueError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert 'pip install -e ".[onnx]"' in result.stdout


# --- equality with the project's own lowering ----------------------------------------------------

def spec_to_onnx(spec: NetworkSpec) -> onnx.ModelProto:
    """The network of ``spec`` emitted op by op from its layer table: Conv + BN (or bias) + ReLU,
    ceil-mode MaxPool, GlobalAveragePool, Flatten + Gemm, Add; several producers are concatenated."""
    g = Graph((1, spec.in_channels, spec.resolution, spec.resolution))
    out = {}

    def source(producers):
        if not producers:
            return "x"
        name = producers[0] if len(producers) == 1 else "concat_" + "_".join(producers)
        if name not in out:  # a fire module's two expands, concatenated once
            out[name] = g.node("Concat", [out[p] for p in producers], name, axis=1)
        return out[name]

    for row in layer_table(spec):
        layer, x = row.layer, source(row.inputs)
        if row.op == "conv":
            ph, pw = row.padding
            y = g.conv(x, layer.name, row.in_shape[0], layer.K, (layer.R, layer.S), stride=layer.stride,
                       pad=[ph, pw, ph, pw], group=layer.groups, bn=not row.bias, bias=row.bias, relu=row.relu,
                       weight=np.ones((layer.K, layer.C // layer.groups, layer.R, layer.S), np.float32))
        elif row.op == "max_pool":
            y = g.node("MaxPool", [x], layer.name, kernel_shape=[layer.R, layer.S], strides=[2, 2], ceil_mode=1)
        elif row.op == "avg_pool":
            y = g.node("GlobalAveragePool", [x], layer.name)
        elif row.op == "fc":
            flat = g.node("Flatten", [x], f"{layer.name}/flatten", axis=1)
            y = g.gemm(flat, layer.name, layer.C, layer.K, weight=np.ones((layer.K, layer.C), np.float32))
            y = g.node("Relu", [y], f"{layer.name}/relu") if row.relu else y
        else:
            assert row.op == "add", row.op
            y = g.node("Add", [source(operand) for operand in row.operands], layer.name)
            y = g.node("Relu", [y], f"{layer.name}/relu") if row.relu else y
        out[layer.name] = y
    return g.model(y)


EVERY_BLOCK = NetworkSpec(
    Stem(kernel=5, stride=2, width=16, pool="max3"),
    (Stage("conv", 1, 16, groups=2, pool="max2"), Stage("dwsep", 1, 24, stride=2), Stage("inverted", 2, 24, expansion=2),
     Stage("residual", 2, 32, stride=2), Stage("fire", 2, 32, expansion=0.25), Stage("squeezenext", 2, 32)),
    head="fc3", head_widths=(20,), resolution=64, num_classes=10, name="every_block")


@pytest.mark.parametrize("spec", [EVERY_BLOCK, reference_network("squeezenet_v1_1").at_resolution(64),
                                  reference_network("squeezenext_23").at_resolution(64)], ids=lambda s: s.name)
def test_import_equals_the_projects_lowering(spec):
    assert from_onnx(spec_to_onnx(spec), name=spec.name) == spec.workload()


def test_malformed_models_are_one_clear_error():
    g = Graph((1, 4, 8, 8))
    g.node("Conv", ["x"], "broken")
    with pytest.raises(OnnxImportError, match="node 'broken' \\(Conv\\) is malformed"):
        from_onnx(g.model("broken", check=False))
    g = Graph((1, 4, 8, 8))
    w = g.node("Reshape", ["x", g.init("shape", np.array([4, 4, 4, 4]))], "as_weight")
    with pytest.raises(UnsupportedOperators, match=r"Conv \(weight computed at run time\) x1 "
                                                   r"\(dynamic\)"):
        from_onnx(g.model(g.node("Conv", ["x", w], "dynamic")))
    with pytest.raises(OnnxImportError, match="expected an ONNX file path or an onnx.ModelProto"):
        from_onnx(42)
