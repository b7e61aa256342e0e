"""Network specs: a stem, stages of blocks and a head, as frozen validated data.

A :class:`NetworkSpec` yields its layer list (:func:`layer_table`), the cost model's
:class:`cost_models.Workload`, and (in :mod:`search_spaces.flax_models`) a Flax module.
Reference networks of the papers are specs too (:data:`REFERENCE_NETWORKS`).

Block types (``Stage.block``):

``conv``        k x k convolution (``groups`` allowed), BN, ReLU.
``dwsep``       MobileNet v1: depthwise k x k (stride), pointwise 1x1 to ``width``.
``inverted``    MobileNet v2: 1x1 expand by ``expansion``, depthwise k x k, 1x1 project;
                identity skip when the shape is kept.
``fire``        SqueezeNet: 1x1 squeeze to ``width * expansion``, then 1x1 and k x k
                expands of ``width / 2`` each, concatenated.
``squeezenext`` SqueezeNext: 1x1 to width/2 (stride), 1x1 to width/4, k x 1 and 1 x k
                to width/2, 1x1 to width; skip (1x1 projection when the shape changes).
``residual``    ResNet basic block: two k x k convolutions, skip (1x1 projection on change).

Parameters counted: convolution weights (no bias) plus a batch-norm scale and bias per
output channel, and the classifier's weights and bias (the Flax model has exactly these).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable

from cost_models import Layer, Workload
from cost_models.specs import JsonSpec, checked_fields
from cost_models.workload import conv_output_size, infer_kind

BLOCKS = ("conv", "dwsep", "inverted", "fire", "squeezenext", "residual")
POOLS = ("none", "max2", "max3")
HEADS = ("fc", "conv", "fc3")


def _check_int(owner: str, name: str, value, low: int, allowed: str | None = None):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{owner}: field {name!r} must be {allowed or f'an integer >= {low}'}, got {value!r}")


def _check_choice(owner: str, name: str, value, choices):
    if value not in choices:
        raise ValueError(f"{owner}: field {name!r} must be one of {', '.join(map(str, choices))}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class Stem(JsonSpec):
    """The first convolution (and an optional max pool after it)."""

    kernel: int = 3
    stride: int = 2
    width: int = 32
    padding: int = -1  # -1: kernel // 2
    pool: str = "none"

    def __post_init__(self):
        _check_choice("stem", "kernel", self.kernel, (3, 5, 7, 11))
        _check_int("stem", "stride", self.stride, 1)
        _check_int("stem", "width", self.width, 1)
        _check_int("stem", "padding", self.padding, -1)
        _check_choice("stem", "pool", self.pool, POOLS)

    @property
    def pad(self) -> int:
        return self.kernel // 2 if self.padding < 0 else self.padding


@dataclasses.dataclass(frozen=True)
class Stage(JsonSpec):
    """``depth`` blocks of one type; the first block has ``stride``; a pool may follow."""

    block: str
    depth: int
    width: int
    kernel: int = 3
    stride: int = 1
    expansion: float = 1.0
    groups: int = 1
    pool: str = "none"

    def __post_init__(self):
        _check_choice("stage", "block", self.block, BLOCKS)
        _check_int("stage", "depth", self.depth, 1)
        _check_int("stage", "width", self.width, 1)
        _check_choice("stage", "kernel", self.kernel, (1, 3, 5, 7))
        _check_int("stage", "stride", self.stride, 1)
        _check_int("stage", "groups", self.groups, 1)
        _check_choice("stage", "pool", self.pool, POOLS)
        if isinstance(self.expansion, bool) or not isinstance(self.expansion, (int, float)) or not 0 < self.expansion <= 8:
            raise ValueError(f"stage: field 'expansion' must be a number in (0, 8], got {self.expansion!r}")
        object.__setattr__(self, "expansion", float(self.expansion))
        if self.block != "conv" and self.groups != 1:
            raise ValueError(f"stage: field 'groups' is only allowed for block 'conv', got groups={self.groups} for {self.block!r}")
        if self.block in ("fire", "squeezenext") and self.width % 4:
            raise ValueError(f"stage: field 'width' must be a multiple of 4 for {self.block!r} blocks, got {self.width}")
        if self.block in ("fire", "squeezenext") and self.kernel == 1:
            raise ValueError(f"stage: field 'kernel' must be 3, 5 or 7 for {self.block!r} blocks, got 1")


@dataclasses.dataclass(frozen=True)
class NetworkSpec(JsonSpec):
    """A CNN: stem, stages, head; input resolution and classes; a global width multiplier."""

    stem: Stem
    stages: tuple[Stage, ...]
    head: str = "fc"
    head_widths: tuple[int, ...] = ()
    resolution: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    width_multiplier: float = 1.0
    name: str = "network"

    def __post_init__(self):
        if not isinstance(self.stem, Stem):
            raise ValueError(f"network: field 'stem' must be a Stem, got {type(self.stem).__name__}")
        stages = tuple(self.stages)
        if not stages or not all(isinstance(s, Stage) for s in stages):
            raise ValueError("network: field 'stages' must be a non-empty tuple of Stage")
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "head_widths", tuple(self.head_widths))
        _check_choice("network", "head", self.head, HEADS)
        for width in self.head_widths:
            _check_int("network", "head_widths", width, 1, "positive integers")
        _check_int("network", "resolution", self.resolution, 1)
        _check_int("network", "in_channels", self.in_channels, 1)
        _check_int("network", "num_classes", self.num_classes, 2, "an integer >= 2")
        if isinstance(self.width_multiplier, bool) or not isinstance(self.width_multiplier, (int, float)) \
                or not 0.05 <= self.width_multiplier <= 4:
            raise ValueError(f"network: field 'width_multiplier' must be a number in [0.05, 4], got {self.width_multiplier!r}")
        object.__setattr__(self, "width_multiplier", float(self.width_multiplier))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"network: field 'name' must be a non-empty string (quote it in JSON), got {self.name!r}")
        layer_table(self)  # raises if a stride or pool shrinks the map below 1x1

    def scaled(self, width: int, multiple: int = 1) -> int:
        """A width after the global multiplier, rounded to ``multiple`` (at least ``multiple``)."""
        return max(multiple, int(round(width * self.width_multiplier / multiple)) * multiple)

    def replace(self, **changes) -> "NetworkSpec":
        return dataclasses.replace(self, **changes)

    def at_resolution(self, resolution: int, num_classes: int | None = None) -> "NetworkSpec":
        return dataclasses.replace(self, resolution=resolution, num_classes=num_classes or self.num_classes)

    # to_dict / to_json / from_json: JsonSpec's (the stem and stages as dicts, tuples as lists)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkSpec":
        """The spec of :meth:`to_dict`'s output. A missing, unknown, null or mistyped field is a ValueError
        naming it and where it is (``stem``, ``stages[i]``), with what is allowed."""
        data = checked_fields(cls, data)
        data["stem"] = _nested("stem", Stem, data["stem"])
        stages = data["stages"]
        if not isinstance(stages, (list, tuple)) or not stages:
            raise ValueError(f"network: field 'stages' must be a non-empty list of stage objects "
                             f"{{\"block\": ..., \"depth\": ..., \"width\": ...}}, got {stages!r:.60}")
        data["stages"] = tuple(_nested(f"stages[{i}]", Stage, stage) for i, stage in enumerate(stages))
        head_widths = data.get("head_widths", ())
        if not isinstance(head_widths, (list, tuple)):
            raise ValueError(f"network: field 'head_widths' must be a list of positive integers, got {head_widths!r:.60}")
        data["head_widths"] = tuple(head_widths)
        return cls(**data)

    def workload(self, resolution: int | None = None, compression=None) -> Workload:
        """The cost model's layer list (optionally at another resolution, with a compression policy)."""
        spec = self if resolution is None else self.at_resolution(resolution)
        rows = layer_table(spec)
        if compression is not None:
            return compression.apply(rows, spec.name)
        return Workload(tuple(row.layer for row in rows), spec.name)

    @property
    def macs(self) -> int:
        return sum(row.layer.macs for row in layer_table(self))

    @property
    def params(self) -> int:
        return sum(row.params for row in layer_table(self))


def _nested(where: str, cls, data):
    """``cls.from_dict(data)`` for a part of a network spec; its error says where the part is (``stages[2]``)."""
    try:
        return cls.from_dict(data)
    except ValueError as error:
        message = re.sub(r"^(stem|stage): ", "", str(error))  # the part's own label; ``where`` says more
        raise ValueError(f"network: {where}: {message}") from None


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One layer in execution order: the cost-model layer, where it sits, and its parameters."""

    layer: Layer
    stage: int  # -1 for the stem, len(stages) for the head
    block: int
    in_shape: tuple[int, int, int]  # C, H, W
    out_shape: tuple[int, int, int]
    params: int
    #: names of the layers whose outputs this layer reads (summed channels when several,
    #: as after a fire module's concatenation; an eltwise add reads its two operands);
    #: empty for the network input.
    inputs: tuple[str, ...] = ()
    #: What the Flax model computes here: ``conv`` (then batch norm, or a bias when
    #: ``bias``), ``fc``, ``max_pool`` (stride 2, ceil mode), ``avg_pool`` (global
    #: average) or ``add`` (the sum of ``operands``). Inputs of several producers are
    #: concatenated on the channel axis in the order given.
    op: str = "conv"
    relu: bool = False  # ReLU at the end (after batch norm; after the sum of an add)
    bias: bool = False  # a bias instead of batch norm (classifier convolution, fully connected layers)
    padding: tuple[int, int] = (0, 0)  # zero rows and columns the convolution adds on each side
    operands: tuple[tuple[str, ...], ...] = ()  # add: the producers of each summand


class _Builder:
    """Walks a spec and emits LayerRows, tracking the feature-map shape."""

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        self.rows: list[LayerRow] = []
        self.C, self.H, self.W = spec.in_channels, spec.resolution, spec.resolution
        self.tensor: tuple[str, ...] = ()  # the layers producing the current feature map

    def state(self) -> tuple:
        """The current feature map (C, H, W, producers), to branch from later."""
        return (self.C, self.H, self.W, self.tensor)

    def _emit(self, layer: Layer, stage: int, block: int, params: int, inputs: tuple[str, ...] | None = None,
              **model):
        in_shape = (self.C, self.H, self.W)
        out_shape = (layer.K, layer.P, layer.Q)
        inputs = self.tensor if inputs is None else inputs
        self.rows.append(LayerRow(layer, stage, block, in_shape, out_shape, params, inputs, **model))
        self.C, self.H, self.W = out_shape
        self.tensor = (layer.name,)

    def conv(self, name, K, R, S=None, stride=1, padding=None, groups=1, stage=0, block=0, bn=True, bias=False,
             source=None, relu=True):
        S = R if S is None else S
        C, H, W, inputs = source or self.state()
        pad_h = R // 2 if padding is None else padding
        pad_w = S // 2 if padding is None else padding
        P = conv_output_size(H, R, stride, pad_h)
        Q = conv_output_size(W, S, stride, pad_w)
        if P < 1 or Q < 1 or H < stride or W < stride:
            raise ValueError(f"network {self.spec.name!r}: layer {name!r} shrinks the {H}x{W} map below 1x1 "
                             f"(kernel {R}x{S}, stride {stride}) at resolution {self.spec.resolution}")
        kind = infer_kind(C, K, H, W, R, S, groups)
        kind = "pointwise" if kind == "fc" else kind  # a 1x1 convolution on a 1x1 map
        if pad_h == pad_w:
            layer = Layer(name, kind, C, K, H, W, R, S, stride, pad_h, groups, P=P, Q=Q)
        else:  # asymmetric padding (k x 1 kernels): the map is given pre-padded
            layer = Layer(name, kind, C, K, H + 2 * pad_h, W + 2 * pad_w, R, S, stride, 0, groups, P=P, Q=Q)
        params = layer.params + (2 * K if bn else 0) + (K if bias else 0)
        model = dict(op="conv", relu=relu, bias=bias, padding=(pad_h, pad_w))
        if source is None:
            self._emit(layer, stage, block, params, **model)
        else:
            self.rows.append(LayerRow(layer, stage, block, (C, H, W), (K, P, Q), params, inputs, **model))
        return (K, P, Q)

    def pool(self, name, kind, stage, block):
        if kind == "none":
            return
        R = 2 if kind == "max2" else 3
        if self.H < R or self.W < R:
            raise ValueError(f"network {self.spec.name!r}: pool {name!r} ({R}x{R}, stride 2) needs a map of at least "
                             f"{R}x{R}, got {self.H}x{self.W} at resolution {self.spec.resolution}")
        # ceil-mode pooling (as SqueezeNet and Darknet use): no row or column is dropped
        P = math.ceil((self.H - R) / 2) + 1
        Q = math.ceil((self.W - R) / 2) + 1
        layer = Layer(name, "pool", self.C, self.C, self.H, self.W, R, R, 2, 0, P=P, Q=Q)
        self._emit(layer, stage, block, 0, op="max_pool")

    def eltwise(self, name, stage, block, skip: tuple[str, ...], relu: bool):
        """An addition of the current map and ``skip`` (the producers of the other operand)."""
        layer = Layer(name, "eltwise", self.C, self.C, self.H, self.W)
        self._emit(layer, stage, block, 0, inputs=self.tensor + skip, op="add", relu=relu,
                   operands=(self.tensor, skip))


def _skip(entry: tuple, stride: int, width: int, prefix: str, every_layer: bool = False) -> tuple[str, ...]:
    """The producers of a skip connection's operand: a 1x1 projection or the block's input."""
    return (f"{prefix}_shortcut",) if entry[0] != width or stride != 1 or every_layer else entry[3]


def _block(b: _Builder, stage: Stage, s: int, i: int, width: int, stride: int, prefix: str | None = None,
           every_layer: bool = False):
    """Emit block ``i`` of stage ``s``. ``every_layer`` emits the layers a block has only for some sizes too
    (an inverted block's expansion and addition, a projection shortcut): the union an elastic network needs."""
    prefix = f"s{s}b{i}" if prefix is None else prefix
    k = stage.kernel
    if stage.block == "conv":
        b.conv(f"{prefix}_conv", width, k, stride=stride, groups=stage.groups, stage=s, block=i)
    elif stage.block == "dwsep":
        b.conv(f"{prefix}_dw", b.C, k, stride=stride, groups=b.C, stage=s, block=i)
        b.conv(f"{prefix}_pw", width, 1, stage=s, block=i)
    elif stage.block == "inverted":
        skip = stride == 1 and (b.C == width or every_layer)
        entry = b.state()
        hidden = max(1, int(round(b.C * stage.expansion)))
        if hidden != b.C or every_layer:
            b.conv(f"{prefix}_expand", hidden, 1, stage=s, block=i)
        b.conv(f"{prefix}_dw", hidden, k, stride=stride, groups=hidden, stage=s, block=i)
        b.conv(f"{prefix}_project", width, 1, stage=s, block=i, relu=False)
        if skip:
            b.eltwise(f"{prefix}_add", s, i, skip=entry[3], relu=False)
    elif stage.block == "fire":
        squeeze = max(1, int(round(width * stage.expansion)))
        b.conv(f"{prefix}_squeeze", squeeze, 1, stride=stride, stage=s, block=i)
        source = b.state()
        b.conv(f"{prefix}_expand1x1", width // 2, 1, stage=s, block=i, source=source)
        b.conv(f"{prefix}_expand{k}x{k}", width // 2, k, stage=s, block=i, source=source)
        b.C = width
        b.tensor = (f"{prefix}_expand1x1", f"{prefix}_expand{k}x{k}")  # concatenated
    elif stage.block == "squeezenext":
        entry = b.state()
        b.conv(f"{prefix}_reduce1", width // 2, 1, stride=stride, stage=s, block=i)
        b.conv(f"{prefix}_reduce2", width // 4, 1, stage=s, block=i)
        b.conv(f"{prefix}_{k}x1", width // 2, k, 1, padding=None, stage=s, block=i)
        b.conv(f"{prefix}_1x{k}", width // 2, 1, k, stage=s, block=i)
        b.conv(f"{prefix}_expand", width, 1, stage=s, block=i, relu=False)
        if entry[0] != width or stride != 1 or every_layer:
            b.conv(f"{prefix}_shortcut", width, 1, stride=stride, stage=s, block=i, source=entry, relu=False)
        b.eltwise(f"{prefix}_add", s, i, skip=_skip(entry, stride, width, prefix, every_layer), relu=True)
    elif stage.block == "residual":
        entry = b.state()
        b.conv(f"{prefix}_conv1", width, k, stride=stride, stage=s, block=i)
        b.conv(f"{prefix}_conv2", width, k, stage=s, block=i, relu=False)
        if entry[0] != width or stride != 1 or every_layer:
            b.conv(f"{prefix}_shortcut", width, 1, stride=stride, stage=s, block=i, source=entry, relu=False)
        b.eltwise(f"{prefix}_add", s, i, skip=_skip(entry, stride, width, prefix, every_layer), relu=True)


def layer_table(spec: NetworkSpec) -> tuple[LayerRow, ...]:
    """Every layer of ``spec`` in execution order, with shapes and parameter counts."""
    b = _Builder(spec)
    stem = spec.stem
    b.conv("stem", spec.scaled(stem.width), stem.kernel, stride=stem.stride, padding=stem.pad, stage=-1)
    b.pool("stem_pool", stem.pool, -1, 0)
    for s, stage in enumerate(spec.stages):
        multiple = 4 if stage.block in ("fire", "squeezenext") else 1
        width = spec.scaled(stage.width, multiple)
        for i in range(stage.depth):
            _block(b, stage, s, i, width, stage.stride if i == 0 else 1)
        b.pool(f"s{s}_pool", stage.pool, s, stage.depth)
    head = len(spec.stages)
    global_pool = lambda: Layer("global_pool", "pool", b.C, b.C, b.H, b.W, b.H, b.W, 1, 0, P=1, Q=1)
    if spec.head == "conv":
        # SqueezeNet: a 1x1 classifier convolution with bias, then global average pooling.
        b.conv("classifier", spec.num_classes, 1, stage=head, bn=False, bias=True, relu=False)
        b._emit(global_pool(), head, 0, 0, op="avg_pool")
    else:
        if spec.head == "fc":
            b._emit(global_pool(), head, 0, 0, op="avg_pool")
        # fc3 (AlexNet) flattens the map: the first fully connected layer reads C*H*W inputs
        for j, width in enumerate(spec.head_widths + (spec.num_classes,)):
            name = "fc" if j == len(spec.head_widths) else f"fc{j}"
            features = b.C * b.H * b.W
            layer = Layer(name, "fc", features, width, 1, 1)
            b.rows.append(LayerRow(layer, head, j, (features, 1, 1), (width, 1, 1), layer.params + width, b.tensor,
                                   op="fc", relu=j < len(spec.head_widths), bias=True))
            b.C, b.H, b.W, b.tensor = width, 1, 1, (name,)
    return tuple(b.rows)


TABLE1_TYPES = ("conv1", "1x1", "FxF", "DW", "FC")


def table1_type(layer: Layer, first: bool) -> str | None:
    """Kwon et al. (DAC'18) Table 1's category of a layer, or None for layers without MACs.

    ``conv1``: the first convolution (``first``); ``1x1``: pointwise convolutions;
    ``FxF``: other dense or grouped convolutions, F > 1; ``DW``: depthwise; ``FC``:
    fully connected layers.
    """
    if layer.macs == 0:
        return None
    if first:
        return "conv1"
    if layer.kind == "depthwise":
        return "DW"
    if layer.kind == "fc":
        return "FC"
    return "1x1" if layer.R == layer.S == 1 else "FxF"


def table1_types(layers: Iterable[Layer]) -> tuple[str | None, ...]:
    """:func:`table1_type` of every layer of a network, in order (the first with MACs is conv1)."""
    types, seen_first = [], False
    for layer in layers:
        types.append(table1_type(layer, first=not seen_first))
        seen_first = seen_first or types[-1] is not None
    return tuple(types)


def mac_shares(spec: NetworkSpec) -> dict[str, float]:
    """Share of MACs (percent) by layer type as Kwon et al. (DAC'18) Table 1 counts them (see :func:`table1_type`)."""
    layers = [r.layer for r in layer_table(spec)]
    total = sum(layer.macs for layer in layers)
    shares = dict.fromkeys(TABLE1_TYPES, 0.0)
    for layer, kind in zip(layers, table1_types(layers)):
        if kind is not None:
            shares[kind] += 100.0 * layer.macs / total
    return shares

