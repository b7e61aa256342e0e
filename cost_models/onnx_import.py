"""Import an ONNX model as a cost-model :class:`~cost_models.workload.Workload`.

What a deployment compiler would run on the accelerator becomes layers; the rest is
absorbed. Shapes come from ONNX shape inference (NCHW, batch dimension ignored: the
cost of one sample; a symbolic batch dimension is fine).

Layers (as :mod:`search_spaces.networks` lowers the same network):

* ``Conv``, ``ConvInteger``, ``QLinearConv`` (grouped and depthwise included) -> a
  convolution whose kind is inferred from its sizes (a 1x1 convolution on a 1x1 map is
  ``pointwise``). Equal padding on all four sides is the layer's ``padding``; any other
  padding (asymmetric ``pads``, ``auto_pad`` SAME_UPPER/SAME_LOWER with an odd total,
  different padding along H and W) gives the layer its input map pre-padded (``H`` and
  ``W`` include the padding, ``padding=0``), as the project does for k x 1 kernels. The
  output size ``P x Q`` is always shape inference's. Dilation keeps the kernel size ``R x
  S`` (MACs and weights are exact; the cost model sees an undilated window).
* ``Gemm``, ``MatMul``, ``MatMulInteger``, ``QLinearMatMul`` with a constant 2-D weight
  -> ``fc`` (``C`` = inputs, ``K`` = outputs); an input of ``M`` rows per sample -> a
  ``pointwise`` layer on an ``M x 1`` map (exact MACs). The rows are every leading
  dimension but the model's batch (the graph inputs' leading size, 1 where symbolic): a
  sequence-first input, ``(tokens, batch, features)`` or ``(tokens, features)`` as
  PyTorch exports attention's projections, has ``tokens x batch`` rows.
* ``MatMul`` (and its integer forms) of two activations, attention's scores ``Q x K^T``
  and their product with ``V`` -> an array layer with the second operand in the weight's
  place (``w_source="activation"``: read and priced as a weight, not counted in the
  model's weights or size): one group per head (``grouped``; ``pointwise`` or ``fc`` for
  one head), each an ``M x 1`` map of ``D`` inputs and ``N`` outputs, so MACs are
  ``heads x M x D x N``, as torchvision counts attention.
* ``Einsum`` of two operands that is a (batched) matrix product (``bhid,bhjd->bhij``) ->
  as the ``MatMul`` it is: indices in both operands and the output are groups, indices
  in both operands only are contracted; a constant operand is the weight.
* ``MaxPool``, ``AveragePool``, ``GlobalMaxPool``, ``GlobalAveragePool``, and
  ``ReduceMean``/``ReduceMax`` over H and W -> ``pool``; any other reduction of an
  activation (``ReduceL2`` for a vector norm, ``ReduceMean`` over the features) -> one
  ``eltwise`` pass over its input, as a layer norm.
* ``Add``, ``Sub``, ``Mul``, ``Div``, ``Sum`` of two activations -> ``eltwise`` (``Sum``
  of n activations: n - 1 layers); with a constant operand (a scale or bias) absorbed.
* ``LayerNormalization``, ``GroupNormalization``, ``InstanceNormalization``, ``Softmax``,
  ``LogSoftmax`` (statistics of the activation at run time, so nothing folds them away
  or fuses them into the layer before) -> one ``eltwise`` pass over their input on the
  SIMD unit; the reductions for mean, variance or the softmax's sum are not counted
  apart.
* ``Gather`` on an activation (a class token picked from a sequence) is a view; from a
  constant table by index (an embedding lookup) it is not modelled.
* ONNX Runtime's QOperator ops (``com.microsoft``) like their QDQ equivalents:
  ``QLinearAdd``/``QLinearMul`` -> ``eltwise``, ``QGemm`` -> ``fc`` (its int8 weight's bits
  and density), ``QLinearGlobalAveragePool`` -> ``pool``, ``QLinearSoftmax`` -> one
  ``eltwise`` pass; ``QLinearSigmoid``, ``QLinearLeakyRelu``, ``QLinearConcat`` are
  absorbed. ONNX's shape
  inference does not know them, so the importer gives it their output shapes
  (:func:`_qoperator_output`) and infers again.

The one rule for activations: a function applied element by element to one tensor costs
nothing (fused into the layer that makes its input), however it is spelled: one operator (``Relu``,
``HardSwish``, ``Gelu``, ``Erf``, ...) or element-wise operators on one tensor (SiLU as
``x * Sigmoid(x)``, GELU as ``x * (1 + Erf(x / sqrt(2))) / 2``): an element-wise op whose
activation operands all come from one tensor through :data:`ELEMENTWISE_OPS` adds no
layer. Operands from different tensors (a residual ``Add``, a squeeze-and-excitation
``Mul``) make an ``eltwise`` layer, and a function that needs statistics of the
activation (a norm, ``Softmax``, a reduction) is one ``eltwise`` pass over its input.

Absorbed (no layer): batch norm (folded into the convolution before it), activations,
reshapes, transposes, casts, ``Concat`` (a fire module's concatenation adds no layer in
the project's lowering either), ``Split`` and ``Slice`` (views of a map: a ShuffleNet
``chunk``), ``Expand`` (a broadcast its reader takes as it is), ``Pad`` (the next layer
reads the padded map), quantize / dequantize nodes,
and any node whose inputs are all constants (constant folding). Shape arithmetic (values
computed from a static shape, as ``chunk``'s slice ends ``Shape -> Gather -> Div``, and
small values computed from constants alone, as a Swin block's padding) is computed while
importing (:func:`_fold_shape_arithmetic`), so shape inference goes on past it; folding
and inference repeat until nothing is new (:func:`_shapes`), since a shape known in
one block can make the next block's computable.

Compression is read from the file, never guessed. ``w_density`` is the fraction of
non-zero entries of the weight initializer (behind a ``DequantizeLinear``: entries equal
to the zero point count as zeros; an all-zero weight counts as one non-zero, as a
Layer's density must be positive). ``w_bits`` is the width of the quantized weight's
type (int8/uint8/float8 -> 8, int4/uint4 -> 4, int2 -> 2, int16 -> 16) when the weight
passes through ``QuantizeLinear``/``DequantizeLinear`` or is the integer input of
``QLinearConv``/``ConvInteger``/``QLinearMatMul``/``MatMulInteger``; ``a_bits`` likewise
from the layer's input activation. Float tensors keep the Layer default (16 bits), as an
uncompressed ``NetworkSpec.workload()`` has. Vector layers (no weights) get
``w_bits = a_bits``.

An operator it does not model (or a supported one it cannot cost: a convolution whose
weight is computed at run time, a shape inference could not give) is listed
in one :class:`UnsupportedOperators` error (op type, count, first node names); with
``skip_unsupported=True`` those nodes are left out and :attr:`ImportReport.skipped`
records them. ``onnx`` is an optional dependency: ``pip install -e ".[onnx]"``.

    from cost_models import Workload, import_onnx
    workload = Workload.from_onnx("model.onnx")
    report = import_onnx("model.onnx", skip_unsupported=True)   # .workload, .skipped
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from cost_models.workload import Layer, Workload, infer_kind

INSTALL_HINT = 'pip install -e ".[onnx]"'
#: Node names shown per operator type in the unsupported-operator report.
SHOWN_NAMES = 3

#: Nodes that add no layer: folded, fused or a view of memory on a deployment compiler.
#: Activation functions of one operator (free: fused into the layer that makes their input).
ACTIVATION_OPS = frozenset({
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Tanh",
    "Softplus", "Gelu", "Mish", "Erf",
})
ABSORBED = ACTIVATION_OPS | frozenset({
    "BatchNormalization",
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast", "Concat", "Pad",
    "Split", "Slice", "Expand",
    "QuantizeLinear", "DequantizeLinear", "Constant", "ConstantOfShape", "Shape", "Size",
})
#: Element-wise ops of one activation (any other operand a constant): the pieces an activation function is
#: spelled with (SiLU ``x * Sigmoid(x)``, GELU ``x * (1 + Erf(x / sqrt(2))) / 2``).
ELEMENTWISE_OPS = ACTIVATION_OPS | frozenset({
    "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Pow", "Add", "Sub", "Mul", "Div", "Identity", "Cast",
})
#: Ops that give a value-preserving view of their first input (followed to a weight initializer
#: and back from an activation to its quantization).
VIEW_OPS = frozenset({"Identity", "Dropout", "Cast", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze"})
#: Ops whose outputs are known before run time whatever their inputs hold.
SHAPE_OPS = frozenset({"Shape", "Size"})
STANDARD_DOMAINS = ("", "ai.onnx")

_BITS_BY_TYPE = {8: ("INT8", "UINT8", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
                     "FLOAT8E8M0"),
                 6: ("FLOAT6E2M3", "FLOAT6E3M2"),
                 4: ("INT4", "UINT4", "FLOAT4E2M1"),
                 2: ("INT2", "UINT2"),
                 16: ("INT16", "UINT16")}


class OnnxImportError(ValueError):
    """An ONNX model the importer cannot read; the message names the file (and node)."""


@dataclasses.dataclass(frozen=True)
class Unsupported:
    """Nodes of one operator type (with a reason, e.g. ``Gemm (a transposed input (transA=1))``) left unmodelled."""

    op_type: str
    nodes: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.nodes)

    def describe(self) -> str:
        """``LSTM x2 (lstm_0, lstm_1)``, with at most :data:`SHOWN_NAMES` names."""
        names = ", ".join(self.nodes[:SHOWN_NAMES]) + (", ..." if self.count > SHOWN_NAMES else "")
        return f"{self.op_type} x{self.count} ({names})"


class UnsupportedOperators(OnnxImportError):
    """The model holds operators the cost model does not model; :attr:`unsupported` lists them."""

    def __init__(self, source: str, unsupported: tuple[Unsupported, ...]):
        self.source, self.unsupported = source, unsupported
        total = sum(u.count for u in unsupported)
        super().__init__(f"{source}: {total} operator{'s' if total != 1 else ''} the cost model does not model: "
                         f"{'; '.join(u.describe() for u in unsupported)}; pass skip_unsupported=True "
                         f"(--skip-unsupported) to leave them out")


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """An imported workload and the nodes left out of it (``skip_unsupported=True``)."""

    workload: Workload
    skipped: tuple[Unsupported, ...] = ()
    source: str = "<model>"

    @property
    def skipped_counts(self) -> dict[str, int]:
        return {u.op_type: u.count for u in self.skipped}

    def summary(self) -> str:
        """``skipped: LSTM x1 (lstm_0); ...`` (empty when nothing was skipped)."""
        if not self.skipped:
            return ""
        total = sum(u.count for u in self.skipped)
        return (f"skipped: {total} node{'s' if total != 1 else ''} not in these totals: "
                f"{'; '.join(u.describe() for u in self.skipped)}")


class _NotModelled(Exception):
    """A supported op type this node's form cannot be costed; the text is the reason."""


@dataclasses.dataclass(frozen=True)
class _TensorInfo:
    elem_type: int  # onnx.TensorProto data type, 0 when unknown
    dims: tuple[int | None, ...] | None  # None: rank unknown; None entries: symbolic or unknown


@dataclasses.dataclass(frozen=True)
class _Graph:
    """What the lowering of one node reads: tensor types and shapes, constants and producers."""

    tensors: Mapping[str, _TensorInfo]
    values: Mapping[str, object]  # constant name -> onnx.TensorProto (initializers, Constant nodes)
    producers: Mapping[str, object]  # tensor name -> the onnx.NodeProto that outputs it
    constant: frozenset[str]  # tensors known before run time
    batch: int = 1  # the graph inputs' leading size (1 where it was symbolic), when they agree on one

    def info(self, name: str) -> _TensorInfo:
        return self.tensors.get(name, _TensorInfo(0, None))

    def is_activation(self, name: str) -> bool:
        return bool(name) and name not in self.constant


# --- loading ----------------------------------------------------------------------------------

def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise OnnxImportError(f"importing ONNX models needs the onnx package: {INSTALL_HINT} ({error})") from None
    return onnx


def load_model(model) -> tuple[object, str]:
    """``(ModelProto, label)`` of a path or a ModelProto; unreadable files raise :class:`OnnxImportError`."""
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "<model>"
    if not isinstance(model, (str, Path)):
        raise OnnxImportError(f"expected an ONNX file path or an onnx.ModelProto, got {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise OnnxImportError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        if not missing_external_data(proto, path.parent):
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(proto, str(path.parent))
    except Exception as error:  # protobuf's DecodeError, unreadable external data, ...
        raise OnnxImportError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    return proto, str(path)


def _external_locations(model) -> set[str]:
    """The files the model's initializers keep their data in (ONNX's external data)."""
    from onnx import TensorProto

    return {entry.value for init in model.graph.initializer if init.data_location == TensorProto.EXTERNAL
            for entry in init.external_data if entry.key == "location"}


def missing_external_data(model, folder: Path) -> tuple[str, ...]:
    """The external data files the model names that are not in ``folder`` (a model saved without its weights)."""
    return tuple(sorted(name for name in _external_locations(model) if not (folder / name).is_file()))


def _without_data(tensor) -> bool:
    """Whether a tensor's values are not in memory: kept in an external file that was not loaded."""
    from onnx import TensorProto

    return tensor.data_location == TensorProto.EXTERNAL and not tensor.raw_data


def _batch_of_one(model):
    """A copy of ``model`` with batch 1 where its graph inputs leave the batch symbolic (that symbol is 1
    wherever the file uses it), so that shapes computed from the batch (a flatten's -1) are known."""
    model = type(model).FromString(model.SerializeToString())
    initializers = {init.name for init in model.graph.initializer}
    symbols = set()
    for value in model.graph.input:
        shape = value.type.tensor_type.shape
        if value.name not in initializers and value.type.tensor_type.HasField("shape") and shape.dim \
                and not shape.dim[0].dim_value:
            symbols.add(shape.dim[0].dim_param)
            shape.dim[0].Clear()
            shape.dim[0].dim_value = 1
    symbols.discard("")
    for value in (*model.graph.value_info, *model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.Clear()
                dim.dim_value = 1
    return model


def _infer_shapes(model, source: str):
    """ONNX's shape inference (batch 1), carried past ONNX Runtime's QOperator ops, whose shapes it does not know
    (:func:`_qoperator_output`): their outputs' shapes are added and inference runs again until nothing is new."""
    onnx = _onnx()
    model = _batch_of_one(model)
    for _ in range(len(model.graph.node) + 1):
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception as error:  # InferenceError, ValidationError, ...
            raise OnnxImportError(f"{source}: ONNX shape inference failed ({type(error).__name__}: {error})") \
                from None
        added = _qoperator_shapes(inferred)
        if not added:
            return inferred
        model = inferred
        names = {vi.name for vi in added}
        kept = [vi for vi in model.graph.value_info if vi.name not in names]  # a partial shape, replaced
        del model.graph.value_info[:]
        model.graph.value_info.extend(kept + added)
    return inferred


#: ONNX Runtime's QOperator ops (``com.microsoft``) whose output shape the importer gives shape inference.
QOPERATOR_DOMAIN = "com.microsoft"


def _qoperator_output(node, infos: Mapping[str, "_TensorInfo"]) -> tuple[int, tuple[int, ...]] | None:
    """(element type, dims) of a QOperator node's output from its inputs' (None: not known yet or not such an op)."""
    def known(name):
        info = infos.get(name)
        return info if info is not None and info.dims is not None and None not in info.dims else None

    a = known(node.input[0]) if node.input else None
    if a is None:
        return None
    if node.op_type in ("QLinearAdd", "QLinearMul"):
        b = known(node.input[3]) if len(node.input) > 3 else None
        if b is None:
            return None
        rank = max(len(a.dims), len(b.dims))
        padded = [(1,) * (rank - len(t.dims)) + tuple(t.dims) for t in (a, b)]
        return a.elem_type, tuple(max(x, y) for x, y in zip(*padded))
    if node.op_type in ("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"):
        return a.elem_type, tuple(a.dims)
    if node.op_type == "QLinearGlobalAveragePool":
        if _attribute(node, "channels_last", 0):
            return a.elem_type, (a.dims[0],) + (1,) * (len(a.dims) - 2) + (a.dims[-1],)
        return a.elem_type, tuple(a.dims[:2]) + (1,) * (len(a.dims) - 2)
    if node.op_type == "QGemm":
        b = known(node.input[3]) if len(node.input) > 3 else None
        if b is None or len(a.dims) != 2 or len(b.dims) != 2:
            return None
        rows = a.dims[1] if _attribute(node, "transA", 0) else a.dims[0]
        columns = b.dims[0] if _attribute(node, "transB", 0) else b.dims[1]
        quantized = len(node.input) > 8 and node.input[8] and known(node.input[8])
        return (quantized.elem_type if quantized else 1), (rows, columns)  # float output without y's zero point
    return None


def _qoperator_shapes(inferred) -> list:
    """value_info for the outputs of QOperator nodes that shape inference left without a shape."""
    from onnx import helper

    graph = inferred.graph
    infos = _tensor_infos(graph)
    added = []
    for node in graph.node:
        if node.domain != QOPERATOR_DOMAIN or not node.output or not node.output[0]:
            continue
        output = infos.get(node.output[0])
        if output is not None and output.dims is not None and None not in output.dims:
            continue
        found = _qoperator_output(node, infos)
        if found is not None:
            added.append(helper.make_tensor_value_info(node.output[0], found[0], list(found[1])))
            infos[node.output[0]] = _TensorInfo(*found)
    return added


#: Ops computed while importing when they take a shape (shape arithmetic: a ``chunk``'s slice ends from
#: ``Shape -> Gather -> Div``), so shape inference can go on past them.
SHAPE_ARITHMETIC_OPS = frozenset({
    "Gather", "Add", "Sub", "Mul", "Div", "Mod", "Floor", "Ceil", "Cast", "Concat", "Unsqueeze", "Squeeze",
    "Slice", "Reshape", "Range", "Equal", "Where", "Min", "Max", "Neg", "Abs", "Identity", "ReduceProd",
    "ConstantOfShape", "Transpose", "Expand",
})
#: The largest shape-arithmetic result computed (elements).
MAX_SHAPE_VALUES = 4096


#: Rounds of shape folding and inference at most (each round makes the shapes the next one computes from).
MAX_FOLDING_ROUNDS = 32


def _without_large_data(proto):
    """A copy of ``proto`` whose initializers of more than :data:`MAX_SHAPE_VALUES` elements keep their name, type
    and dims but no data (marked external), for the shape work (each round serializes the model, which protobuf
    refuses above 2 GB); built field by field, never serializing ``proto`` itself."""
    from onnx import TensorProto

    def copy_fields(source, target, leave_out: str):
        for field, value in source.ListFields():
            if field.name == leave_out:
                continue
            if hasattr(value, "extend"):
                getattr(target, field.name).extend(value)
            elif hasattr(value, "CopyFrom"):
                getattr(target, field.name).CopyFrom(value)
            else:
                setattr(target, field.name, value)

    skeleton = type(proto)()
    copy_fields(proto, skeleton, "graph")
    copy_fields(proto.graph, skeleton.graph, "initializer")
    for init in proto.graph.initializer:
        if math.prod(init.dims) > MAX_SHAPE_VALUES and not _without_data(init):
            skeleton.graph.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims,
                                           data_location=TensorProto.EXTERNAL)
        else:
            skeleton.graph.initializer.add().CopyFrom(init)
    return skeleton


def _shapes(proto, source: str):
    """``proto`` with every shape inference and :func:`_fold_shape_arithmetic` can give: rounds of folding and
    inference until nothing is new (a shape known after one round can make the next one computable, as in a
    Swin transformer's blocks), run on :func:`_without_large_data`'s copy; the large initializers' data is put
    back at the end."""
    inferred = _infer_shapes(_without_large_data(proto), source)
    for _ in range(MAX_FOLDING_ROUNDS):
        following = _fold_shape_arithmetic(inferred, source)
        if following is inferred:
            break
        inferred = following
    originals = {init.name: init for init in proto.graph.initializer}
    for init in inferred.graph.initializer:
        if _without_data(init) and init.name in originals and not _without_data(originals[init.name]):
            init.CopyFrom(originals[init.name])
    return inferred


def _fold_shape_arithmetic(inferred, source: str):
    """``inferred`` with every value computed from a static shape (``Shape``/``Size`` of a tensor whose dims shape
    inference knows, then :data:`SHAPE_ARITHMETIC_OPS` on it and on constants) given to the nodes that read it as an
    initializer, and shapes inferred again; ``inferred`` itself when there is none. Values come from ONNX's
    reference evaluator; a node it cannot compute stays as it is."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = inferred.graph
    infos = _tensor_infos(graph)
    constants = {init.name: init for init in graph.initializer if not _without_data(init)}
    constants.update({node.output[0]: _constant_value(node) for node in graph.node
                      if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS
                      and _constant_value(node) is not None})
    opsets = {o.domain: o.version for o in inferred.opset_import}
    derived: dict[str, np.ndarray] = {}

    def value(name):
        return derived[name] if name in derived else numpy_helper.to_array(constants[name])

    for node in graph.node:
        if node.domain not in STANDARD_DOMAINS:
            continue
        if node.op_type in SHAPE_OPS:
            dims = infos.get(node.input[0], _TensorInfo(0, None)).dims
            if dims is None or None in dims:
                continue
            full = np.array(dims, np.int64)
            derived[node.output[0]] = (full[_attribute(node, "start", 0):_attribute(node, "end", None)]
                                       if node.op_type == "Shape" else np.array(full.prod(), np.int64))
            continue
        inputs = [name for name in node.input if name]
        if node.op_type not in SHAPE_ARITHMETIC_OPS or not inputs \
                or not all(name in derived or name in constants for name in inputs) \
                or any(np.size(value(name)) > MAX_SHAPE_VALUES for name in inputs):
            continue
        try:
            outputs = ReferenceEvaluator(node, opsets=opsets).run(None, {name: value(name) for name in inputs})
        except Exception:  # an op the reference evaluator does not compute here: left to shape inference
            continue
        if all(np.size(o) <= MAX_SHAPE_VALUES for o in outputs):
            derived.update((name, np.asarray(o)) for name, o in zip(node.output, outputs) if name)
    readers = [node for node in graph.node if node.op_type not in SHAPE_OPS
               and any(name in derived for name in node.input) and not all(o in derived for o in node.output)]
    if not readers:
        return inferred
    model = type(inferred).FromString(inferred.SerializeToString())
    renamed = {}
    for node in model.graph.node:
        if node.op_type in SHAPE_OPS or all(o in derived for o in node.output if o):
            continue
        for i, name in enumerate(node.input):
            if name in derived:
                renamed.setdefault(name, f"{name}/computed")
                node.input[i] = renamed[name]
    model.graph.initializer.extend(numpy_helper.from_array(derived[name], new) for name, new in renamed.items())
    del model.graph.value_info[:]
    return _infer_shapes(model, source)


def _tensor_info(value_info) -> _TensorInfo:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return _TensorInfo(tensor_type.elem_type, None)
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim)
    return _TensorInfo(tensor_type.elem_type, dims)


def _constant_value(node):
    """The TensorProto a ``Constant`` node holds (its ``value`` attribute), or None."""
    for attribute in node.attribute:
        if attribute.name == "value":
            return attribute.t
    return None


def _tensor_infos(graph) -> dict[str, _TensorInfo]:
    """Type and shape of every tensor shape inference (or the file) gives, initializers included."""
    tensors = {vi.name: _tensor_info(vi) for vi in (*graph.input, *graph.value_info, *graph.output)}
    for init in graph.initializer:
        tensors.setdefault(init.name, _TensorInfo(init.data_type, tuple(int(d) for d in init.dims)))
    return tensors


def _graph(model) -> _Graph:
    graph = model.graph
    tensors = _tensor_infos(graph)
    values = {init.name: init for init in graph.initializer}
    producers, constant = {}, set(values)
    for node in graph.node:
        for output in node.output:
            producers[output] = node
        if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and _constant_value(node) is not None:
            value = _constant_value(node)
            values[node.output[0]] = value
            tensors.setdefault(node.output[0], _TensorInfo(value.data_type, tuple(int(d) for d in value.dims)))
        if node.op_type in SHAPE_OPS or all(name in constant for name in node.input if name):
            constant.update(name for name in node.output if name)
    leading = {tensors[vi.name].dims[0] for vi in graph.input if vi.name not in values
               and tensors[vi.name].dims and tensors[vi.name].dims[0] is not None}
    return _Graph(tensors, values, producers, frozenset(constant), leading.pop() if len(leading) == 1 else 1)


def _node_names(nodes) -> list[str]:
    """A unique, non-empty name per node (``conv_3`` for an unnamed Conv at index 3)."""
    names, seen = [], set()
    for index, node in enumerate(nodes):
        name = node.name or f"{node.op_type.lower()}_{index}"
        unique, n = name, 1
        while unique in seen:
            n += 1
            unique = f"{name}_{n}"
        seen.add(unique)
        names.append(unique)
    return names


# --- attributes, shapes, bits -------------------------------------------------------------------

def _attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _feature_map(info: _TensorInfo, what: str) -> tuple[int, ...]:
    """The per-sample dimensions (batch dropped) of a tensor; :class:`_NotModelled` when unknown."""
    if info.dims is None or len(info.dims) < 2 or any(d is None for d in info.dims[1:]):
        raise _NotModelled(f"no inferred shape for its {what}")
    return tuple(info.dims[1:])


def _chw(info: _TensorInfo, what: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of an NCHW map; other ranks fold to ``(d1, d2, d3 * ...)`` with missing sizes 1."""
    dims = _feature_map(info, what)
    rest = dims[2:]
    return dims[0], dims[1] if len(dims) > 1 else 1, math.prod(rest) if rest else 1


def _nchw(info: _TensorInfo, what: str) -> tuple[int, int, int]:
    dims = _feature_map(info, what)
    if len(dims) != 3:
        raise _NotModelled(f"{len(dims) - 1}-D {what}; only 2-D (NCHW) maps are modelled")
    return dims


def bits_of_type(elem_type: int) -> int | None:
    """The bit width of a quantized ONNX element type (``None`` for float and wide integer types)."""
    from onnx import TensorProto

    for bits, names in _BITS_BY_TYPE.items():
        if any(getattr(TensorProto, name, None) == elem_type for name in names):
            return bits
    return None


def _activation_bits(g: _Graph, tensor: str) -> int | None:
    """Bits of an activation: its own quantized type, or the integer input of the DequantizeLinear
    that makes it (through views such as Flatten)."""
    for _ in range(len(g.producers) + 1):
        bits = bits_of_type(g.info(tensor).elem_type)
        if bits is not None:
            return bits
        node = g.producers.get(tensor)
        if node is None:
            return None
        if node.op_type == "DequantizeLinear":
            return bits_of_type(g.info(node.input[0]).elem_type)
        if node.op_type not in VIEW_OPS:
            return None
        tensor = node.input[0]
    return None


@dataclasses.dataclass(frozen=True)
class _Weight:
    density: float
    bits: int | None


def _broadcast_zero_point(zero: np.ndarray, shape: tuple[int, ...], axis: int, block: int) -> np.ndarray:
    """A zero point (scalar, per-axis or blocked) broadcast against a weight of ``shape``."""
    if zero.size == 1:
        return zero.reshape(())
    if zero.shape == shape:
        return zero
    axis = axis % len(shape)
    if block and zero.ndim == len(shape):
        return np.repeat(zero, block, axis=axis)[tuple(slice(0, n) for n in shape)]
    if zero.ndim == 1 and zero.size == shape[axis]:
        return zero.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    raise _NotModelled(f"a zero point of shape {zero.shape} for a weight of shape {shape}")


def _density(values: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> float:
    if zero is not None and np.any(zero.astype(np.int64) != 0):
        zero = _broadcast_zero_point(zero.astype(np.int64), values.shape, axis, block)
        nonzero = int(np.count_nonzero(values.astype(np.int64) != zero))
    else:
        nonzero = int(np.count_nonzero(values))
    return max(nonzero, 1) / max(values.size, 1)


def _weight(g: _Graph, tensor: str, zero_point: str = "", axis: int = 0) -> _Weight:
    """Density and bits of a weight, followed through views and quantize/dequantize to its initializer."""
    from onnx import numpy_helper

    bits, block = None, 0
    for _ in range(len(g.producers) + 1):
        if tensor in g.values:
            break
        node = g.producers.get(tensor)
        if node is None or not (node.op_type in VIEW_OPS or node.op_type in ("QuantizeLinear", "DequantizeLinear")):
            producer = "a graph input" if node is None else f"a {node.op_type} node"
            raise _NotModelled(f"weight made by {producer}, not an initializer")
        if node.op_type == "DequantizeLinear":
            bits = bits or bits_of_type(g.info(node.input[0]).elem_type)
            if len(node.input) > 2 and node.input[2] and not zero_point:
                zero_point, axis, block = node.input[2], _attribute(node, "axis", 1), _attribute(node, "block_size", 0)
        elif node.op_type == "QuantizeLinear":
            bits = bits or bits_of_type(g.info(node.output[0]).elem_type)
        tensor = node.input[0]
    else:
        raise _NotModelled("weight computed at run time")
    bits = bits or bits_of_type(g.values[tensor].data_type)
    if _without_data(g.values[tensor]):  # the weights' file is not there: dense (import_onnx warns)
        return _Weight(1.0, bits)
    values = numpy_helper.to_array(g.values[tensor])
    zero = numpy_helper.to_array(g.values[zero_point]) if zero_point in g.values else None
    return _Weight(_density(values, zero, axis, block), bits)


def _compression(g: _Graph, weight: _Weight | None, inputs: tuple[str, ...]) -> dict:
    """Layer keyword arguments for the bits and density read from the file (defaults otherwise)."""
    found = [b for b in (_activation_bits(g, name) for name in inputs if name) if b is not None]
    extra = {"a_bits": max(found)} if found else {}
    if weight is None:
        if found:
            extra["w_bits"] = extra["a_bits"]
        return extra
    if weight.bits is not None:
        extra["w_bits"] = weight.bits
    if weight.density < 1.0:
        extra["w_density"] = weight.density
    return extra


# --- lowering: one node -> layers --------------------------------------------------------------

def _pair(node, name: str, default: int) -> tuple[int, int]:
    values = tuple(_attribute(node, name, (default, default)))
    if len(values) != 2:
        raise _NotModelled(f"{len(values)}-D {name}; only 2-D windows are modelled")
    return values


def _pads(node, size: tuple[int, int], out: tuple[int, int], kernel: tuple[int, int],
          strides: tuple[int, int], dilations: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` from ``pads`` or ``auto_pad`` (SAME_*: what gives the inferred output)."""
    auto_pad = _attribute(node, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = [max((o - 1) * s + (k - 1) * d + 1 - n, 0) for n, o, k, s, d in zip(size, out, kernel, strides, dilations)]
        small = [t // 2 for t in total]
        large = [t - t // 2 for t in total]
        begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        return begin[0], begin[1], end[0], end[1]
    if auto_pad == "VALID":
        return 0, 0, 0, 0
    pads = tuple(_attribute(node, "pads", (0, 0, 0, 0)))
    if len(pads) != 4:
        raise _NotModelled(f"{len(pads)} pads; only 2-D windows are modelled")
    return pads


def _window_layer(name: str, kind: str, C: int, K: int, size: tuple[int, int], out: tuple[int, int],
                  kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
                  groups: int = 1, **extra) -> Layer:
    """A convolution or pooling layer; padding other than equal on all sides pre-pads the input map."""
    if stride[0] != stride[1]:
        raise _NotModelled(f"unequal strides {stride[0]}x{stride[1]}")
    (H, W), (P, Q), (R, S) = size, out, kernel
    top, left, bottom, right = pads
    if top == bottom == left == right:
        return Layer(name, kind, C, K, H, W, R, S, stride[0], top, groups, P=P, Q=Q, **extra)
    return Layer(name, kind, C, K, H + top + bottom, W + left + right, R, S, stride[0], 0, groups, P=P, Q=Q, **extra)


def _conv(node, name: str, g: _Graph, x: str, w: str, zero_point: str = "") -> tuple[Layer, ...]:
    C, H, W = _nchw(g.info(x), "input")
    K, P, Q = _nchw(g.info(node.output[0]), "output")
    if not g.is_activation(x):
        raise _NotModelled("a constant input")
    if g.is_activation(w):
        raise _NotModelled("weight computed at run time")
    kernel_dims = _feature_map(g.info(w), "weight")
    if len(kernel_dims) != 3:
        raise _NotModelled(f"a weight of rank {len(kernel_dims) + 1}")
    R, S = kernel_dims[1:]
    groups = _attribute(node, "group", 1)
    strides, dilations = _pair(node, "strides", 1), _pair(node, "dilations", 1)
    pads = _pads(node, (H, W), (P, Q), (R, S), strides, dilations)
    kind = infer_kind(C, K, H, W, R, S, groups)
    kind = "pointwise" if kind == "fc" else kind  # a 1x1 convolution on a 1x1 map, as the project lowers it
    extra = _compression(g, _weight(g, w, zero_point), (x,))
    return (_window_layer(name, kind, C, K, (H, W), (P, Q), (R, S), strides, pads, groups, **extra),)


def _matmul(node, name: str, g: _Graph, a: str, b: str, transposed: bool = False,
            zero_point: str = "") -> tuple[Layer, ...]:
    """An activation times a constant 2-D weight: fc, or pointwise on an M x 1 map for M rows per sample; an
    activation times an activation: :func:`_activation_matmul`."""
    if g.is_activation(b) and g.is_activation(a):
        return _activation_matmul(name, g, a, b, transposed)
    if g.is_activation(b):
        raise _NotModelled("the weight as first operand")
    weight_dims = g.info(b).dims
    if weight_dims is None or None in weight_dims:
        raise _NotModelled("no inferred shape for its weight")
    if len(weight_dims) != 2:
        raise _NotModelled(f"a weight of rank {len(weight_dims)}")
    K, C = weight_dims if transposed else weight_dims[::-1]
    return (_product_layer(name, g, a, b, 1, math.prod(_rows(g, a)), C, K, zero_point),)


def _activation_matmul(name: str, g: _Graph, a: str, b: str, transposed: bool = False) -> tuple[Layer, ...]:
    """A MatMul of two activations (attention's scores ``Q x K^T`` and their product with ``V``): ``A [..., M, D]``
    times ``B [..., D, N]``, both with the same leading dimensions (one product per head), or ``B`` of rank 2
    (one operand for every row of ``A``). Mapped as a MatMul by a weight is, ``B`` in the weight's place
    (``w_source="activation"``: priced as a weight, not part of the model): one group per leading index (the
    model's batch left out, as :func:`_rows` does), each an ``M x 1`` map of ``D`` inputs and ``N`` outputs, so
    the layer's MACs are ``groups x M x D x N``. Bits: ``a_bits`` from ``A``, ``w_bits`` from ``B``."""
    a_dims, b_dims = g.info(a).dims, g.info(b).dims
    if a_dims is None or b_dims is None or None in a_dims or None in b_dims:
        raise _NotModelled("no inferred shape for its inputs")
    if len(a_dims) < 2 or len(b_dims) < 2:
        raise _NotModelled("a 1-D operand")
    D, N = b_dims[-1:-3:-1] if transposed else b_dims[-2:]
    if len(b_dims) == 2:
        groups, M = 1, math.prod(_rows(g, a))
    else:
        if tuple(a_dims[:-2]) != tuple(b_dims[:-2]):
            raise _NotModelled(f"operands with different leading dimensions {tuple(a_dims[:-2])} and "
                               f"{tuple(b_dims[:-2])} (broadcast)")
        groups, M = math.prod(_per_sample(g, a_dims[:-2])), a_dims[-2]
    return (_product_layer(name, g, a, b, groups, M, D, N),)


def _product_layer(name: str, g: _Graph, a: str, b: str, groups: int, M: int, D: int, N: int,
                   zero_point: str = "") -> Layer:
    """The array layer of ``groups`` products of ``A`` (``M x D``) and ``B`` (``D x N``): ``groups`` groups of an
    ``M x 1`` map of ``D`` inputs and ``N`` outputs (one group of one row: ``fc``). ``B`` a constant: the weight,
    its density and bits read from the file (``zero_point``: an integer MatMul's, per output column); an
    activation: ``w_source="activation"``, ``a_bits`` from ``A`` and ``w_bits`` from ``B``."""
    C, K = groups * D, groups * N
    kind = infer_kind(C, K, M, 1, 1, 1, groups)
    if not g.is_activation(b):
        return Layer(name, kind, C, K, M, 1, groups=groups,
                     **_compression(g, _weight(g, b, zero_point, axis=1), (a,)))
    extra = {field: bits for field, bits in (("a_bits", _activation_bits(g, a)), ("w_bits", _activation_bits(g, b)))
             if bits is not None}
    return Layer(name, kind, C, K, M, 1, groups=groups, w_source="activation", **extra)


def _einsum_terms(equation: str, ranks: tuple[int, ...]) -> tuple[list[str], str]:
    """The operands' and the output's index letters of an Einsum equation, ``...`` spelled out as letters (the
    same ones, right-aligned, in every operand) and an implicit output (letters seen once, sorted) made explicit."""
    inputs, arrow, output = equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ranks):
        raise _NotModelled(f"equation {equation!r} for {len(ranks)} operands")
    ellipsis = max((rank - len(t.replace("...", "")) for t, rank in zip(terms, ranks) if "..." in t), default=0)
    spare = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation)[:ellipsis]
    terms = [t.replace("...", spare[ellipsis - (rank - len(t.replace("...", ""))):]) for t, rank in zip(terms, ranks)]
    if not arrow:
        counts = "".join(terms)
        output = spare + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in spare))
    else:
        output = output.replace("...", spare)
    if any(len(t) != rank for t, rank in zip(terms, ranks)):
        raise _NotModelled(f"equation {equation!r} does not match its operands' ranks {ranks}")
    return terms, output


def _einsum(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    """An Einsum of two operands that is a (batched) matrix product, as attention is often written
    (``bhid,bhjd->bhij``): letters in both operands and the output are groups (heads; the model's batch left out),
    letters in both operands only are contracted (``D``), and each operand's own letters are its rows (``M``) and
    columns (``N``). Lowered as :func:`_matmul` and :func:`_activation_matmul` lower a MatMul: a constant operand
    is the weight; two activations give a layer whose second operand is computed at run time."""
    if len(node.input) != 2:
        raise _NotModelled(f"{len(node.input)} operands; only products of two are modelled")
    dims = [g.info(x).dims for x in node.input]
    if any(d is None or None in d for d in dims):
        raise _NotModelled("no inferred shape for its inputs")
    equation = str(_attribute(node, "equation", ""))
    terms, output = _einsum_terms(equation, tuple(len(d) for d in dims))
    operands = list(zip(node.input, terms))
    if not g.is_activation(operands[0][0]):
        operands.reverse()  # the constant, if any, is the weight
    (a, left), (b, right) = operands
    if not g.is_activation(a):
        raise _NotModelled("two constant inputs")
    size: dict[str, int] = {}
    for term, shape in zip(terms, dims):
        for letter, extent in zip(term, shape):
            size[letter] = max(size.get(letter, 1), extent)
    if any(c not in output and c not in other for term, other in ((left, right), (right, left)) for c in term):
        raise _NotModelled(f"equation {equation!r} sums an index of one operand alone")
    batch = [c for c in left if c in right and c in output]
    rows = [c for c in left if c not in right]
    leading = (batch or rows)[:1]
    if leading and leading[0] == left[0] and size[left[0]] == g.batch:  # the model's batch: one sample's cost
        batch, rows = [c for c in batch if c != left[0]], [c for c in rows if c != left[0]]
    groups = math.prod(size[c] for c in batch)
    M = math.prod(size[c] for c in rows)
    D = math.prod(size[c] for c in left if c in right and c not in output)
    N = math.prod(size[c] for c in right if c not in left)
    return (_product_layer(name, g, a, b, groups, M, D, N),)


def _rows(g: _Graph, a: str) -> tuple[int, ...]:
    """The rows a MatMul or Gemm multiplies by its weight, per sample: every leading dimension of its input but
    the model's batch. A leading dimension that is not the batch (a sequence first, ``(tokens, batch, features)``
    or ``(tokens, features)`` as PyTorch exports attention's projections) is rows of its own."""
    dims = g.info(a).dims
    if dims is None or any(d is None for d in dims):
        raise _NotModelled("no inferred shape for its input")
    return _per_sample(g, dims[:-1])


def _per_sample(g: _Graph, leading) -> tuple[int, ...]:
    """Leading dimensions without the model's batch: the first one left out when it is the batch's size."""
    leading = tuple(leading)
    return leading[1:] if leading and leading[0] == g.batch else leading


def _gemm(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    if _attribute(node, "transA", 0):
        raise _NotModelled("a transposed input (transA=1)")
    return _matmul(node, name, g, node.input[0], node.input[1], transposed=bool(_attribute(node, "transB", 0)))


def _pool(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    x = node.input[0]
    C, H, W = _nchw(g.info(x), "input")
    _, P, Q = _nchw(g.info(node.output[0]), "output")
    kernel = tuple(_attribute(node, "kernel_shape", ()))
    if len(kernel) != 2:
        raise _NotModelled(f"a {len(kernel)}-D window; only 2-D windows are modelled")
    strides, dilations = _pair(node, "strides", 1), _pair(node, "dilations", 1)
    pads = _pads(node, (H, W), (P, Q), kernel, strides, dilations)
    extra = _compression(g, None, (x,))
    return (_window_layer(name, "pool", C, C, (H, W), (P, Q), kernel, strides, pads, **extra),)


def _global_pool_layer(name: str, g: _Graph, x: str) -> tuple[Layer, ...]:
    C, H, W = _nchw(g.info(x), "input")
    return (Layer(name, "pool", C, C, H, W, H, W, 1, 0, P=1, Q=1, **_compression(g, None, (x,))),)


def _reduce(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    """ReduceMean/ReduceMax over H and W of an NCHW map: a global pool. Any other reduction of an activation (a
    vector norm over the features, as ``F.normalize`` exports it with ``ReduceL2``): one element-wise pass over its
    input on the SIMD unit, as :func:`_normalization` costs a layer norm."""
    from onnx import numpy_helper

    x = node.input[0]
    if not g.is_activation(x):
        return ()
    axes = _attribute(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in g.values:
            raise _NotModelled("axes computed at run time")
        axes = numpy_helper.to_array(g.values[node.input[1]]).tolist()
    rank = len(g.info(x).dims or ())
    if node.op_type in ("ReduceMean", "ReduceMax") and rank == 4 and axes is not None \
            and sorted(a % rank for a in np.atleast_1d(axes)) == [2, 3]:
        return _global_pool_layer(name, g, x)
    return _normalization(node, name, g)


def _eltwise(node, name: str, g: _Graph, inputs: tuple[str, ...] | None = None) -> tuple[Layer, ...]:
    """Two (or n) activations combined element by element: n - 1 eltwise layers; a constant operand is absorbed.
    ``inputs``: the operands when not every input is one (a QOperator's scales and zero points)."""
    operands = [x for x in (node.input if inputs is None else inputs) if g.is_activation(x)]
    if len(operands) < 2:
        return ()
    if len({_activation_root(g, x) for x in operands}) == 1:
        return ()  # one tensor through an activation function: absorbed, as a single-op activation is
    C, H, W = _chw(g.info(node.output[0]), "output")
    extra = _compression(g, None, tuple(operands))
    return tuple(Layer(name if i == 0 else f"{name}_{i + 1}", "eltwise", C, C, H, W, **extra)
                 for i in range(len(operands) - 1))


def _activation_root(g: _Graph, x: str) -> str:
    """The tensor ``x`` is computed from by element-wise ops of one activation each (:data:`ELEMENTWISE_OPS`)."""
    for _ in range(len(g.producers) + 1):
        node = g.producers.get(x)
        if node is None or node.domain not in STANDARD_DOMAINS or node.op_type not in ELEMENTWISE_OPS:
            return x
        activations = [name for name in node.input if g.is_activation(name)]
        if len(activations) != 1:
            return x
        x = activations[0]
    return x


def _normalization(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    """LayerNormalization (and its like, whose statistics come from the activation at run time, unlike a folded
    batch norm): one element-wise pass over its input on the SIMD unit, as an ``eltwise`` layer of the same
    size; the reductions for its mean and variance are not counted apart."""
    x = node.input[0]
    if not g.is_activation(x):
        return ()
    C, H, W = _chw(g.info(x), "input")
    return (Layer(name, "eltwise", C, C, H, W, **_compression(g, None, (x,))),)


def _gather(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    """Gather on an activation (a class token picked out of a sequence) is a view, no layer; a constant table read
    by index (an embedding lookup) is not modelled."""
    if g.is_activation(node.input[0]):
        return ()
    raise _NotModelled("a table read by index (an embedding lookup)")


def _input(node, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


#: Reductions (``_reduce``: a global pool over H and W, else one pass over the input).
REDUCTIONS = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare",
              "ReduceLogSumExp", "ReduceProd")

LOWERINGS: dict[str, Callable] = {
    "Conv": lambda n, name, g: _conv(n, name, g, n.input[0], n.input[1]),
    "ConvInteger": lambda n, name, g: _conv(n, name, g, n.input[0], n.input[1], _input(n, 3)),
    "QLinearConv": lambda n, name, g: _conv(n, name, g, n.input[0], n.input[3], _input(n, 5)),
    "Gemm": _gemm,
    "MatMul": lambda n, name, g: _matmul(n, name, g, n.input[0], n.input[1]),
    "Einsum": _einsum,
    "MatMulInteger": lambda n, name, g: _matmul(n, name, g, n.input[0], n.input[1], zero_point=_input(n, 3)),
    "QLinearMatMul": lambda n, name, g: _matmul(n, name, g, n.input[0], n.input[3], zero_point=_input(n, 5)),
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": lambda n, name, g: _global_pool_layer(name, g, n.input[0]),
    "GlobalMaxPool": lambda n, name, g: _global_pool_layer(name, g, n.input[0]),
    **{op: _reduce for op in REDUCTIONS},
    "Add": _eltwise, "Sub": _eltwise, "Mul": _eltwise, "Div": _eltwise, "Sum": _eltwise,
    "LayerNormalization": _normalization, "GroupNormalization": _normalization,
    "InstanceNormalization": _normalization, "Softmax": _normalization, "LogSoftmax": _normalization,
    "Gather": _gather,
}


#: ONNX Runtime's QOperator ops (``com.microsoft``), lowered like their QDQ equivalents; operand positions as
#: ONNX Runtime documents them (each operand followed by its scale and zero point).
QOPERATOR_LOWERINGS: dict[str, Callable] = {
    "QLinearAdd": lambda n, name, g: _eltwise(n, name, g, (n.input[0], n.input[3])),
    "QLinearMul": lambda n, name, g: _eltwise(n, name, g, (n.input[0], n.input[3])),
    "QGemm": lambda n, name, g: _qgemm(n, name, g),
    "QLinearGlobalAveragePool": lambda n, name, g: _qlinear_global_pool(n, name, g),
    "QLinearConv": LOWERINGS["QLinearConv"],
    "QLinearMatMul": LOWERINGS["QLinearMatMul"],
    "QLinearSoftmax": _normalization,
}
#: QOperator ops that add no layer: activations and views, as their float equivalents.
QOPERATOR_ABSORBED = frozenset({"QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat",
                                "QuantizeLinear", "DequantizeLinear"})
#: The positions of each QOperator op's operands (its scales and zero points may be left out).
QOPERATOR_OPERANDS = {"QLinearAdd": (0, 3), "QLinearMul": (0, 3), "QGemm": (0, 3), "QLinearGlobalAveragePool": (0,),
                      "QLinearConv": (0, 3), "QLinearMatMul": (0, 3), "QLinearSoftmax": (0,)}


def _qgemm(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    if _attribute(node, "transA", 0):
        raise _NotModelled("a transposed input (transA=1)")
    return _matmul(node, name, g, node.input[0], node.input[3], transposed=bool(_attribute(node, "transB", 0)),
                   zero_point=_input(node, 5))


def _qlinear_global_pool(node, name: str, g: _Graph) -> tuple[Layer, ...]:
    if _attribute(node, "channels_last", 0):
        raise _NotModelled("channels last (NHWC)")
    return _global_pool_layer(name, g, node.input[0])


#: Inputs a node of each lowered op type must have (a malformed node is an error, not a crash).
MIN_INPUTS = {"Conv": 2, "ConvInteger": 2, "QLinearConv": 8, "Gemm": 2, "MatMul": 2, "MatMulInteger": 2,
              "QLinearMatMul": 8, "MaxPool": 1, "AveragePool": 1, "GlobalAveragePool": 1, "GlobalMaxPool": 1,
              **{op: 1 for op in REDUCTIONS}, "Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Sum": 1,
              "LayerNormalization": 1, "GroupNormalization": 1, "InstanceNormalization": 1, "Gather": 2, "Einsum": 1,
              "Softmax": 1, "LogSoftmax": 1}


# --- the import ---------------------------------------------------------------------------------

def _op_label(node) -> str:
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}:{node.op_type}"


def _lower_graph(g: _Graph, nodes, source: str) -> tuple[list[Layer], dict[str, list[str]]]:
    """Layers in graph order, and the nodes not modelled (op label -> node names)."""
    layers, unsupported = [], {}
    for node, name in zip(nodes, _node_names(nodes)):
        standard = node.domain in STANDARD_DOMAINS
        if standard and (node.op_type in SHAPE_OPS or all(x in g.constant for x in node.input if x)):
            continue  # constant folding (weights through DequantizeLinear, shape arithmetic)
        qoperator = node.domain == QOPERATOR_DOMAIN
        if (standard and node.op_type in ABSORBED) or (qoperator and node.op_type in QOPERATOR_ABSORBED):
            continue
        lower = LOWERINGS.get(node.op_type) if standard else (QOPERATOR_LOWERINGS.get(node.op_type) if qoperator
                                                              else None)
        if lower is None:
            unsupported.setdefault(_op_label(node), []).append(name)
            continue
        operands = QOPERATOR_OPERANDS[node.op_type] if qoperator else tuple(range(MIN_INPUTS[node.op_type]))
        needed = max(operands) + 1
        if len(node.input) < needed or not all(node.input[i] for i in operands) or not node.output \
                or not node.output[0]:
            raise OnnxImportError(f"{source}: node {name!r} ({node.op_type}) is malformed: it needs "
                                  f"{needed} inputs and an output, has {len(node.input)} inputs "
                                  f"and {len(node.output)} outputs")
        try:
            layers.extend(lower(node, name, g))
        except _NotModelled as reason:
            unsupported.setdefault(f"{node.op_type} ({reason})", []).append(name)
        except ValueError as error:  # the Layer refuses the sizes
            raise OnnxImportError(f"{source}: node {name!r} ({node.op_type}): {error}") from None
        except Exception as error:  # an inconsistent file (e.g. an initializer without its data): one clear line
            raise OnnxImportError(f"{source}: node {name!r} ({node.op_type}) cannot be read: "
                                  f"{type(error).__name__}: {error}") from None
    return layers, unsupported


def _unique(layers: list[Layer]) -> tuple[Layer, ...]:
    seen, out = set(), []
    for layer in layers:
        name, n = layer.name, 1
        while name in seen:
            n += 1
            name = f"{layer.name}_{n}"
        seen.add(name)
        out.append(layer if name == layer.name else dataclasses.replace(layer, name=name))
    return tuple(out)


def import_onnx(model, skip_unsupported: bool = False, name: str | None = None) -> ImportReport:
    """The workload of an ONNX model (a path or an ``onnx.ModelProto``) and what was skipped.

    Raises :class:`UnsupportedOperators` listing every operator not modelled unless
    ``skip_unsupported``; :class:`OnnxImportError` for unreadable or inconsistent models.
    """
    proto, source = load_model(model)
    if not proto.graph.node:
        raise OnnxImportError(f"{source}: the model's graph has no nodes")
    unloaded = sorted(_external_locations(proto)) if any(map(_without_data, proto.graph.initializer)) else []
    if unloaded:
        warnings.warn(f"{source}: its weights are kept in {', '.join(unloaded)}, which is not there: shapes and bit "
                      f"widths are read from the model, every weight density is taken as 1 (dense)", stacklevel=2)
    inferred = _shapes(proto, source)
    g = _graph(inferred)
    layers, unsupported = _lower_graph(g, inferred.graph.node, source)
    skipped = tuple(Unsupported(op, tuple(nodes)) for op, nodes in unsupported.items())
    if skipped and not skip_unsupported:
        raise UnsupportedOperators(source, skipped)
    if not layers:
        left_out = f"; skipped: {'; '.join(u.describe() for u in skipped)}" if skipped else ""
        raise OnnxImportError(f"{source}: no layer the cost model models (convolutions, fully connected, "
                              f"pooling, element-wise){left_out}")
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else (proto.graph.name or "onnx_model")
    return ImportReport(Workload(_unique(layers), name), skipped, source)


def from_onnx(model, skip_unsupported: bool = False, name: str | None = None) -> Workload:
    """The :class:`Workload` of an ONNX model; see :func:`import_onnx` (which also says what was skipped)."""
    return import_onnx(model, skip_unsupported=skip_unsupported, name=name).workload
