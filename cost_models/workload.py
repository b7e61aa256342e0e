"""Workloads: the layer list a cost model evaluates.

A :class:`Layer` is one validated, frozen layer description (a convolution of any
kind, a fully connected layer, or a vector layer run on the 1-D SIMD unit). A
:class:`Workload` is an ordered tuple of layers; :meth:`Workload.arrays` turns it
into :class:`LayerArrays`, a struct of arrays padded to a bucket length with a mask,
which is what the jitted cost model consumes. Padding to buckets means a new
network of similar depth reuses the compiled function.

Loop-nest notation (Eyeriss / Timeloop style), per group of a grouped convolution:
``G`` groups, ``K`` output channels, ``C`` input channels, output map ``P x Q``,
filter ``R x S``. Fields ``C`` and ``K`` of a :class:`Layer` are the layer's total
channel counts; per-group counts are ``C // groups`` and ``K // groups``.

Valid ranges (a :class:`Layer` outside them is a ValueError naming the field, the value
and the range):

========================  ==========================================================
``C``, ``K``              1 .. :data:`MAX_CHANNELS` (2**20; a fully connected layer's
                          ``C`` is the flattened input, e.g. VGG's 25,088)
``groups``                1 .. :data:`MAX_CHANNELS`, dividing ``C`` and ``K``
``H``, ``W``              1 .. :data:`MAX_MAP` (16,384)
``R``, ``S``              1 .. :data:`MAX_MAP`, and at most the padded input
``stride``                1 .. :data:`MAX_MAP`
``padding``               0 .. :data:`MAX_MAP`
``P``, ``Q``              1 .. the padded input (``H + 2*padding``, ``W + 2*padding``)
``w_bits``, ``a_bits``    :data:`MIN_BITS` .. :data:`MAX_BITS` (1 .. 32)
``w_density``             :data:`MIN_W_DENSITY` .. 1 (1e-12 .. 1)
``w_source``              one of :data:`W_SOURCES`
========================  ==========================================================

``w_source`` says where an array layer's second operand comes from: ``"constant"``, a
trained weight stored with the model (the default); ``"activation"``, a tensor computed at
run time, as the keys and values an attention layer multiplies (a MatMul of two
activations). An ``"activation"`` operand is mapped and priced exactly as a weight (it
takes the weight's place in the array and its traffic), but it is not part of the model:
:attr:`Layer.params` (and so the model size) leaves it out.

Why these bounds: the cost model receives every field as float32 and some as int32
(``cost_models.dispatch``), and computes in float32. Every field is at most 2**20 < 2**24,
so it is exact in float32 and far inside int32 (a padded map side is at most 3 * 2**14).
The largest products stay far from float32's 3.4e38: MACs of one layer are at most
``C*K * (R*P) * (S*Q)`` <= 2**40 * (2**29.2)**2 ~ 2**98.4 ~ 4e29 (``R*P`` <= ((H + 2*padding
+ 1) / 2)**2 for any stride), times at most 1024 passes of a 1-bit multiplier and a few
hundred pJ per access: below 1e35. Products above 2**24 are not exact in float32, which
does not matter: they are costs (cycles, accesses, bytes, pJ), rounded to 2**-24 relative,
far below the model's own accuracy; the loop bounds that choose a mapping are single
fields or small products. ``MIN_W_DENSITY`` keeps the weight density a normal float32 whose
products with the smallest counts (one MAC on a 4096 x 4096 array) stay far above
float32's smallest normal number (1.2e-38); an ONNX weight with one non-zero entry has a
density of at least 1/2**31 (an initializer holds at most 2 GB).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Iterable, NamedTuple

import numpy as np

#: Layer kinds, in the order of their integer codes inside :class:`LayerArrays`.
KINDS = ("conv", "pointwise", "depthwise", "grouped", "fc", "pool", "eltwise")
KIND_CODE = {kind: code for code, kind in enumerate(KINDS)}
#: Kinds executed on the PE array (the rest run on the 1-D SIMD unit).
ARRAY_KINDS = ("conv", "pointwise", "depthwise", "grouped", "fc")
VECTOR_KINDS = ("pool", "eltwise")

#: Smallest bucket a workload is padded to; buckets grow in powers of two.
MIN_BUCKET = 8

# Valid ranges of a Layer's fields (see the module docstring for why these bounds).
#: Largest channel count ``C``, ``K`` (and ``groups``): 2**20, so that ``C*K`` <= 2**40.
MAX_CHANNELS = 2**20
#: Largest feature-map side ``H``, ``W``, filter side ``R``, ``S``, ``stride`` and ``padding``: 2**14.
MAX_MAP = 2**14
#: Operand widths ``w_bits``, ``a_bits`` in bits.
MIN_BITS, MAX_BITS = 1, 32
#: Smallest weight density ``w_density`` (the largest is 1: no zero weights).
MIN_W_DENSITY = 1e-12
#: Where an array layer's second operand comes from: a stored weight, or an activation computed at run time.
W_SOURCES = ("constant", "activation")

#: Field -> (smallest, largest) of the integer fields with a fixed range (P, Q: up to the padded input).
LAYER_LIMITS = {
    "C": (1, MAX_CHANNELS), "K": (1, MAX_CHANNELS), "groups": (1, MAX_CHANNELS),
    "H": (1, MAX_MAP), "W": (1, MAX_MAP), "R": (1, MAX_MAP), "S": (1, MAX_MAP), "stride": (1, MAX_MAP),
    "padding": (0, MAX_MAP), "w_bits": (MIN_BITS, MAX_BITS), "a_bits": (MIN_BITS, MAX_BITS),
}


def _require_int(name: str, value, low: int, high: int, layer: str) -> int:
    """``value`` as an int if it is an integer from ``low`` to ``high``, else a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        allowed = (f"between {low} and {high} bits (an integer)" if name in ("w_bits", "a_bits")
                   else f"an integer from {low} to {high}")
        raise ValueError(f"layer {layer!r}: field {name!r} must be {allowed}, got {value!r}")
    return int(value)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window (floor convention)."""
    return (size + 2 * padding - kernel) // stride + 1


def infer_kind(C: int, K: int, H: int, W: int, R: int, S: int, groups: int) -> str:
    """The array kind a convolution of these sizes belongs to."""
    if groups > 1 and groups == C == K:
        return "depthwise"
    if groups > 1:
        return "grouped"
    if R == S == 1 and H == W == 1:
        return "fc"
    if R == S == 1:
        return "pointwise"
    return "conv"


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a workload; validated on construction.

    ``H, W`` are the input feature map (before padding), ``P, Q`` the output map;
    when ``P``/``Q`` are omitted they follow ``(H + 2*padding - R) // stride + 1``.
    ``w_bits``/``a_bits`` are weight and activation bit widths; ``w_density`` is
    the fraction of non-zero weights (1 - sparsity).
    """

    name: str
    kind: str
    C: int
    K: int
    H: int
    W: int
    R: int = 1
    S: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    P: int | None = None
    Q: int | None = None
    w_bits: int = 16
    a_bits: int = 16
    w_density: float = 1.0
    w_source: str = "constant"

    def __post_init__(self):
        name = self.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"field 'name' must be a non-empty string, got {name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"layer {name!r}: field 'kind' must be one of {', '.join(KINDS)}; got {self.kind!r}")
        for field, (low, high) in LAYER_LIMITS.items():
            object.__setattr__(self, field, _require_int(field, getattr(self, field), low, high, name))
        density = self.w_density
        if isinstance(density, bool) or not isinstance(density, (int, float, np.integer, np.floating)) \
                or not MIN_W_DENSITY <= float(density) <= 1.0:
            raise ValueError(f"layer {name!r}: field 'w_density' must be a number from {MIN_W_DENSITY:g} to 1 "
                             f"(the fraction of non-zero weights), got {density!r}")
        object.__setattr__(self, "w_density", float(density))
        if self.w_source not in W_SOURCES:
            raise ValueError(f"layer {name!r}: field 'w_source' must be one of {', '.join(W_SOURCES)}, "
                             f"got {self.w_source!r}")
        if self.w_source == "activation" and self.kind in VECTOR_KINDS:
            raise ValueError(f"layer {name!r}: field 'w_source' is 'activation' but a {self.kind} layer has no "
                             f"second operand; use one of {', '.join(ARRAY_KINDS)}")
        if self.C % self.groups or self.K % self.groups:
            raise ValueError(
                f"layer {name!r}: field 'groups' must divide C={self.C} and K={self.K}, got groups={self.groups}"
            )
        if self.kind in VECTOR_KINDS and self.C != self.K:
            raise ValueError(f"layer {name!r}: a {self.kind} layer keeps its channels, so K must equal C ({self.C}), got {self.K}")
        if self.R > self.H + 2 * self.padding or self.S > self.W + 2 * self.padding:
            raise ValueError(
                f"layer {name!r}: filter {self.R}x{self.S} is larger than the padded input "
                f"{self.H + 2 * self.padding}x{self.W + 2 * self.padding}"
            )
        for out, size, kernel in (("P", self.H, self.R), ("Q", self.W, self.S)):
            value = getattr(self, out)
            if value is None:
                value = conv_output_size(size, kernel, self.stride, self.padding)
            # An output row reads at least one input row: P, Q are at most the padded input.
            object.__setattr__(self, out, _require_int(out, value, 1, size + 2 * self.padding, name))

    # --- derived quantities -------------------------------------------------
    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for vector layers)."""
        if self.kind in VECTOR_KINDS:
            return 0
        return self.P * self.Q * self.K * self.R * self.S * (self.C // self.groups)

    @property
    def params(self) -> int:
        """Stored weights (biases are not counted; see search_spaces for model parameter counts); 0 for a vector
        layer and for a second operand computed at run time (``w_source="activation"``)."""
        if self.kind in VECTOR_KINDS or self.w_source == "activation":
            return 0
        return self.K * self.R * self.S * (self.C // self.groups)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Layer":
        """The layer of :meth:`to_dict`'s output; unknown or missing fields are a ValueError naming them."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict):
            raise ValueError(f"a layer must be a JSON object with fields from {', '.join(names)}; got {data!r:.40}")
        unknown = sorted(set(data) - set(names), key=str)
        if unknown:
            raise ValueError(f"unknown layer field(s) {unknown}; allowed: {names}")
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ValueError(f"layer {data.get('name', '?')!r}: field(s) {missing} missing; required: "
                             f"{[f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]}")
        return cls(**data)


def conv(name: str, C: int, K: int, H: int, W: int | None = None, R: int = 1, S: int | None = None,
         stride: int = 1, padding: int = 0, groups: int = 1, **extra) -> Layer:
    """A convolution whose kind (conv, pointwise, depthwise, grouped, fc) is inferred from its sizes."""
    W = H if W is None else W
    S = R if S is None else S
    kind = infer_kind(C, K, H, W, R, S, groups)
    return Layer(name, kind, C, K, H, W, R, S, stride, padding, groups, **extra)


def fc(name: str, inputs: int, outputs: int, **extra) -> Layer:
    """A fully connected layer, i.e. a 1x1 convolution on a 1x1 map."""
    return Layer(name, "fc", inputs, outputs, 1, 1, **extra)


def pool(name: str, C: int, H: int, W: int | None = None, R: int = 2, stride: int = 2, padding: int = 0, **extra) -> Layer:
    W = H if W is None else W
    return Layer(name, "pool", C, C, H, W, R, R, stride, padding, **extra)


def eltwise(name: str, C: int, H: int, W: int | None = None, **extra) -> Layer:
    """Element-wise addition of two feature maps (e.g. a residual connection)."""
    W = H if W is None else W
    return Layer(name, "eltwise", C, C, H, W, **extra)


class LayerArrays(NamedTuple):
    """Struct of arrays, one entry per layer, padded to a bucket; the cost model's input."""

    kind: np.ndarray  # int32 code from KINDS
    G: np.ndarray  # groups
    K: np.ndarray  # output channels per group
    C: np.ndarray  # input channels per group
    H: np.ndarray
    W: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    S: np.ndarray
    stride: np.ndarray
    w_bits: np.ndarray
    a_bits: np.ndarray
    w_density: np.ndarray
    mask: np.ndarray  # 1.0 for real layers, 0.0 for padding


def bucket_length(n: int) -> int:
    """Smallest power of two >= n (and >= MIN_BUCKET)."""
    size = MIN_BUCKET
    while size < n:
        size *= 2
    return size


@dataclasses.dataclass(frozen=True)
class Workload:
    """An ordered, immutable list of layers (one network at one input size)."""

    layers: tuple[Layer, ...]
    name: str = "workload"

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("field 'layers' must hold at least one layer, got an empty workload")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ValueError(f"field 'layers' must hold Layer objects, got {type(layer).__name__}")
        names = [layer.name for layer in layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"field 'layers': layer names must be unique, repeated: {duplicates}")
        object.__setattr__(self, "layers", layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def arrays(self, bucket: int | None = None) -> LayerArrays:
        """Struct of arrays padded to ``bucket`` (default: next power of two)."""
        n = len(self.layers)
        size = bucket_length(n) if bucket is None else bucket
        if size < n:
            raise ValueError(f"bucket {size} is shorter than the workload ({n} layers)")

        def column(fn, dtype, pad):
            values = [fn(layer) for layer in self.layers] + [pad] * (size - n)
            return np.asarray(values, dtype=dtype)

        i32, f32 = np.int32, np.float32
        return LayerArrays(
            kind=column(lambda l: KIND_CODE[l.kind], i32, KIND_CODE["pointwise"]),
            G=column(lambda l: l.groups, i32, 1),
            K=column(lambda l: l.K // l.groups, i32, 1),
            C=column(lambda l: l.C // l.groups, i32, 1),
            H=column(lambda l: l.H + 2 * l.padding, i32, 1),
            W=column(lambda l: l.W + 2 * l.padding, i32, 1),
            P=column(lambda l: l.P, i32, 1),
            Q=column(lambda l: l.Q, i32, 1),
            R=column(lambda l: l.R, i32, 1),
            S=column(lambda l: l.S, i32, 1),
            stride=column(lambda l: l.stride, i32, 1),
            w_bits=column(lambda l: l.w_bits, i32, 16),
            a_bits=column(lambda l: l.a_bits, i32, 16),
            w_density=column(lambda l: l.w_density, f32, 1.0),
            mask=column(lambda l: 1.0, f32, 0.0),
        )

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "layers": [layer.to_dict() for layer in self.layers]})

    @classmethod
    def from_json(cls, text: str) -> "Workload":
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise ValueError('a workload must be a JSON object {"name": ..., "layers": [layer, ...]}')
        return cls(tuple(Layer.from_dict(layer) for layer in data["layers"]), data.get("name", "workload"))

    @classmethod
    def from_onnx(cls, model, skip_unsupported: bool = False, name: str | None = None) -> "Workload":
        """The workload of an ONNX model (path or ``onnx.ModelProto``); see :mod:`cost_models.onnx_import`."""
        from cost_models.onnx_import import from_onnx

        return from_onnx(model, skip_unsupported=skip_unsupported, name=name)


def as_workload(layers: Iterable[Layer] | Workload, name: str = "workload") -> Workload:
    return layers if isinstance(layers, Workload) else Workload(tuple(layers), name)
