"""Compression policies: quantization bit widths and pruning, per stage or per layer.

A :class:`CompressionPolicy` says, for every layer of a network, how its weights and
activations are quantized (2 to 16 bits, or ``"float"``) and how much of its weights is
pruned (``prune_ratio``, ``unstructured`` or ``channel`` granularity). Settings resolve
per layer name first, then per stage (``"stem"``, ``"s0"``, ``"s1"``, ..., ``"head"``),
then the default. The same policy drives both sides of a candidate:

* the cost model: :meth:`CompressionPolicy.apply` sets each layer's bit widths, its
  weight density (unstructured pruning) or removes the pruned output channels (channel
  pruning) *and* the matching inputs of the layers that read them, following the
  network's data flow (:attr:`search_spaces.networks.LayerRow.inputs`);
* the Flax model (:mod:`search_spaces.flax_models`): fake quantization with a
  straight-through estimator and magnitude pruning masks (:func:`update_masks`).

Channel pruning only removes channels that can really go: outputs that meet a skip
connection's addition (directly or through a pool or a depthwise layer), feed a grouped
convolution, or are the logits keep all their channels. Depthwise layers follow their
input's channels. Unquantized (``"float"``) tensors are costed at ``float_bits``
(16 by default, the Squeezelerator's fixed-point width).

Quantization applies to the layers with weights (convolutions and fully connected
layers): the model fake-quantizes their weights and their input activations. Pooling and
element-wise layers work on their producers' outputs as they are, unquantized, in the
model, in its ONNX export and so in the cost model, which costs them at ``float_bits``
whatever the stage's setting (a setting that names such a layer is an error).

:class:`CompressionSpace` samples policies through Optuna (``compress.*`` parameters),
from a numpy generator, or rebuilds them from a trial's parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Mapping, Sequence

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from cost_models import Layer, Workload
from cost_models.specs import JsonSpec
from search_spaces.choosers import Allowed, Chooser, ChooserSpace, asking_only_for_choices, choices, one_of

FLOAT = "float"
GRANULARITIES = ("unstructured", "channel")
MIN_BITS, MAX_BITS = 2, 16
MAX_PRUNE = 0.95


def _is_bits(value) -> bool:
    if isinstance(value, str):
        return value == FLOAT
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and MIN_BITS <= value <= MAX_BITS


def _bits(value) -> int | str:
    return FLOAT if isinstance(value, str) else int(value)


def _check_bits(field: str, value) -> int | str:
    if not _is_bits(value):
        raise ValueError(f"compression: field {field!r} must be an integer from {MIN_BITS} to {MAX_BITS} "
                         f"or {FLOAT!r}, got {value!r}")
    return _bits(value)


def _is_ratio(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.floating)) and 0.0 <= value <= MAX_PRUNE


@dataclasses.dataclass(frozen=True)
class LayerCompression(JsonSpec):
    """How one layer is compressed."""

    w_bits: int | str = FLOAT
    a_bits: int | str = FLOAT
    prune_ratio: float = 0.0
    granularity: str = "unstructured"

    def __post_init__(self):
        object.__setattr__(self, "w_bits", _check_bits("w_bits", self.w_bits))
        object.__setattr__(self, "a_bits", _check_bits("a_bits", self.a_bits))
        ratio = self.prune_ratio
        if not _is_ratio(ratio):
            raise ValueError(f"compression: field 'prune_ratio' must be a number in [0, {MAX_PRUNE}], got {ratio!r}")
        object.__setattr__(self, "prune_ratio", float(ratio))
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"compression: field 'granularity' must be one of {', '.join(GRANULARITIES)}; "
                             f"got {self.granularity!r}")
        if not self.pruned:  # nothing pruned: the granularity does not matter, so one design has one setting
            object.__setattr__(self, "granularity", GRANULARITIES[0])

    @property
    def pruned(self) -> bool:
        return self.prune_ratio > 0.0

    # to_dict / from_dict / to_json / from_json: JsonSpec's (unknown fields refused)


NONE = LayerCompression()


def kept_channels(channels: int, prune_ratio: float) -> int:
    """Output channels left after channel pruning (at least one)."""
    return max(1, channels - int(math.floor(channels * prune_ratio + 1e-9)))


def stage_key(stage: int, num_stages: int) -> str:
    """The policy key of a layer's stage: ``stem``, ``s0`` ... or ``head``."""
    if stage < 0:
        return "stem"
    return "head" if stage >= num_stages else f"s{stage}"


def _pairs(field: str, value, key_ok: Callable[[str], bool], allowed: str) -> tuple[tuple[str, LayerCompression], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    out = {}
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"compression: field {field!r} must map names to LayerCompression, got {item!r}")
        key, setting = item
        if not isinstance(key, str) or not key_ok(key):
            raise ValueError(f"compression: field {field!r} has key {key!r}; keys must be {allowed}")
        if isinstance(setting, Mapping):
            setting = LayerCompression.from_dict(setting)
        if not isinstance(setting, LayerCompression):
            raise ValueError(f"compression: field {field!r}[{key!r}] must be a LayerCompression, got {setting!r}")
        out[key] = setting
    return tuple(sorted(out.items()))


def _is_stage_key(key: str) -> bool:
    return key in ("stem", "head") or (key.startswith("s") and key[1:].isdigit())


@dataclasses.dataclass(frozen=True)
class CompressionPolicy(JsonSpec):
    """Per-layer compression: ``layers`` (by name) over ``stages`` (by key) over ``default``.

    ``stages`` and ``layers`` accept dicts; they are stored as sorted tuples of pairs so
    the policy stays hashable.
    """

    default: LayerCompression = NONE
    stages: tuple[tuple[str, LayerCompression], ...] = ()
    layers: tuple[tuple[str, LayerCompression], ...] = ()
    float_bits: int = 16

    def __post_init__(self):
        if isinstance(self.default, Mapping):
            object.__setattr__(self, "default", LayerCompression.from_dict(self.default))
        if not isinstance(self.default, LayerCompression):
            raise ValueError(f"compression: field 'default' must be a LayerCompression, got {self.default!r}")
        object.__setattr__(self, "stages", _pairs("stages", self.stages, _is_stage_key, "'stem', 'head' or 's<N>'"))
        object.__setattr__(self, "layers", _pairs("layers", self.layers, bool, "layer names"))
        fb = self.float_bits
        if isinstance(fb, bool) or not isinstance(fb, int) or not 1 <= fb <= 32:
            raise ValueError(f"compression: field 'float_bits' must be an integer from 1 to 32, got {fb!r}")

    @classmethod
    def uniform(cls, w_bits=FLOAT, a_bits=FLOAT, prune_ratio=0.0, granularity="unstructured") -> "CompressionPolicy":
        """The same setting for every layer."""
        return cls(LayerCompression(w_bits, a_bits, prune_ratio, granularity))

    def setting(self, layer_name: str, stage: str) -> LayerCompression:
        """The setting that applies to a layer (by name, then stage key, then default)."""
        return self._by_layer.get(layer_name) or self._by_stage.get(stage) or self.default

    @functools.cached_property
    def _by_layer(self) -> dict[str, LayerCompression]:
        return dict(self.layers)

    @functools.cached_property
    def _by_stage(self) -> dict[str, LayerCompression]:
        return dict(self.stages)

    def settings(self, rows: Sequence) -> dict[str, LayerCompression]:
        """Layer name -> effective setting, for the rows of :func:`search_spaces.networks.layer_table`.

        Channel pruning asked of a layer whose channels cannot go (see the module
        docstring) becomes no pruning for that layer, on both the Flax and cost side.
        """
        num_stages = max(r.stage for r in rows)
        _check_names(self, rows, num_stages)
        prunable = channel_prunable(rows)
        out = {}
        for r in rows:
            setting = self.setting(r.layer.name, stage_key(r.stage, num_stages))
            if setting.granularity == "channel" and setting.pruned and r.layer.name not in prunable:
                setting = dataclasses.replace(setting, prune_ratio=0.0)
            if not r.layer.macs:  # pooling and element-wise layers: no weights, unquantized inputs
                if r.layer.name in self._by_layer and self._by_layer[r.layer.name] != NONE:
                    raise ValueError(
                        f"compression: layer {r.layer.name!r} is a {r.layer.kind} layer, which has no weights "
                        f"and reads its producers' unquantized outputs; name a conv or fc layer, or a stage")
                setting = NONE
            out[r.layer.name] = setting
        return out

    @property
    def is_identity(self) -> bool:
        return self == CompressionPolicy(float_bits=self.float_bits)

    def bits(self, value: int | str) -> int:
        return self.float_bits if value == FLOAT else int(value)

    # --- the cost model side ------------------------------------------------------------
    def apply(self, rows: Sequence, name: str = "network") -> Workload:
        """The compressed workload of a network's layer rows (see module docstring)."""
        if isinstance(rows, Workload):
            raise ValueError("compression: apply() needs the network's layer rows (data flow), not a Workload; "
                             "use NetworkSpec.workload(compression=policy)")
        settings = self.settings(rows)
        original = {r.layer.name: r.layer.K for r in rows}
        out_channels: dict[str, int] = {}
        layers = []
        for r in rows:
            layer, setting = r.layer, settings[r.layer.name]
            C = _input_channels(r, out_channels, original)
            K = layer.K
            groups = layer.groups
            if layer.kind in ("depthwise", "pool", "eltwise"):
                K = C
                groups = C if layer.kind == "depthwise" else 1
            elif setting.granularity == "channel" and setting.pruned:
                K = kept_channels(layer.K, setting.prune_ratio)
            out_channels[layer.name] = K
            density = 1.0
            if setting.pruned and setting.granularity == "unstructured":
                density = max(1.0 - setting.prune_ratio, 1e-3)
            layers.append(dataclasses.replace(
                layer, C=C, K=K, groups=groups, w_bits=self.bits(setting.w_bits), a_bits=self.bits(setting.a_bits),
                w_density=density))
        return Workload(tuple(layers), name)

    # --- data ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"default": self.default.to_dict(),
                "stages": {k: v.to_dict() for k, v in self.stages},
                "layers": {k: v.to_dict() for k, v in self.layers},
                "float_bits": self.float_bits}

    # from_dict / to_json / from_json: JsonSpec's (``__post_init__`` reads the dicts back; unknown fields refused)


def _check_names(policy: "CompressionPolicy", rows: Sequence, num_stages: int) -> None:
    """A ValueError when the policy names a layer or a stage the network does not have (a typo would
    otherwise leave that layer at the default, silently)."""
    layers = [r.layer.name for r in rows]
    stages = list(dict.fromkeys(stage_key(r.stage, num_stages) for r in rows))
    for field, names, known in (("layers", [k for k, _ in policy.layers], layers),
                                ("stages", [k for k, _ in policy.stages], stages)):
        unknown = [name for name in names if name not in known]
        if unknown:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise ValueError(f"compression: field {field!r} names {', '.join(map(repr, unknown))}, which the "
                             f"network does not have; its {field}: {shown}")


def _input_channels(row, out_channels: Mapping[str, int], original: Mapping[str, int]) -> int:
    """A layer's input channels once its producers are pruned (flattened maps scale too).

    ``original`` and ``out_channels`` map layer names to output channels before and after pruning.
    """
    layer = row.layer
    if not row.inputs:
        return layer.C
    producers = row.inputs[:1] if layer.kind == "eltwise" else row.inputs  # an add's operands share channels
    old = sum(original[p] for p in producers)
    new = sum(out_channels[p] for p in producers)
    return layer.C * new // old


def channel_prunable(rows: Sequence) -> frozenset[str]:
    """Layers whose output channels can be removed (see module docstring)."""
    consumers: dict[str, list] = {r.layer.name: [] for r in rows}
    for r in rows:
        for p in r.inputs:
            consumers[p].append(r.layer)
    tied: dict[str, bool] = {}
    for r in reversed(rows):  # consumers come later in execution order
        name = r.layer.name
        def ties(c: Layer) -> bool:
            if c.kind == "eltwise" or c.kind == "grouped":
                return True
            return c.kind in ("pool", "depthwise") and tied[c.name]
        tied[name] = any(ties(c) for c in consumers[name])
    last = rows[-1].layer.name if rows[-1].layer.macs else None
    logits = {r.layer.name for r in rows if r.layer.name in ("classifier", "fc")} | ({last} if last else set())
    return frozenset(r.layer.name for r in rows
                     if r.layer.kind in ("conv", "pointwise", "fc") and not tied[r.layer.name]
                     and r.layer.name not in logits)


# --- magnitude pruning masks (Flax side) ----------------------------------------------------
def pruning_progress(step: int, total_steps: int, end_fraction: float = 0.5) -> float:
    """Fraction of the target sparsity reached at ``step`` (Zhu & Gupta's cubic ramp)."""
    end = max(1, int(total_steps * end_fraction))
    t = min(max(step, 0), end) / end
    return 1.0 - (1.0 - t) ** 3


def magnitude_mask(kernel: np.ndarray, ratio: float, granularity: str) -> np.ndarray:
    """Keep the largest weights (unstructured) or output channels by L2 norm (channel).

    ``kernel``'s last axis is the output channel (Flax HWIO / (in, out) layouts).
    """
    kernel = np.asarray(kernel)
    if ratio <= 0:
        return np.ones(kernel.shape, np.float32)
    if granularity == "channel":
        K = kernel.shape[-1]
        norms = np.sqrt((kernel.reshape(-1, K) ** 2).sum(axis=0))
        keep = np.argsort(-norms, kind="stable")[:kept_channels(K, ratio)]
        channel = np.zeros(K, np.float32)
        channel[keep] = 1.0
        return np.broadcast_to(channel, kernel.shape).astype(np.float32)
    flat = np.abs(kernel).ravel()
    n_prune = int(math.floor(flat.size * ratio + 1e-9))
    mask = np.ones(flat.size, np.float32)
    if n_prune:
        mask[np.argsort(flat, kind="stable")[:n_prune]] = 0.0
    return mask.reshape(kernel.shape)


def update_masks(params, masks, settings: Mapping[str, LayerCompression], progress: float = 1.0):
    """New pruning masks from the weights' magnitudes, at ``progress`` of each target ratio.

    ``masks`` is the model's ``"masks"`` collection; it mirrors the parameter tree
    (``masks[layer]...["kernel"]`` beside ``params[layer]...["kernel"]``). ``settings``
    maps layer names to their compression (``policy.settings(rows)``). Weights already
    masked have magnitude zero, so they stay masked as the ratio grows.
    """
    weights = flatten_dict(params)
    new = {}
    for path in flatten_dict(masks):
        setting = settings[path[0]]
        new[path] = magnitude_mask(np.asarray(weights[path]), setting.prune_ratio * progress, setting.granularity)
    return unflatten_dict(new)


def apply_masks(params, masks):
    """``params`` with every masked weight set to exactly zero."""
    flat = flatten_dict(params)
    for path, mask in flatten_dict(masks).items():
        flat[path] = flat[path] * mask
    return unflatten_dict(flat)


# --- the search space -----------------------------------------------------------------------
_OWNER = "compression space"
_BITS = Allowed(f"integers from {MIN_BITS} to {MAX_BITS} or {FLOAT!r}", _is_bits, _bits)
#: Ratios are kept as given (``0`` stays ``0`` in the space's JSON); policies store them as floats.
_PRUNE_RATIOS = Allowed(f"numbers from 0 to {MAX_PRUNE}", _is_ratio)


def _choices(field: str, values, allowed: Allowed) -> tuple:
    return choices(_OWNER, field, values, allowed, lone_value=True)


@dataclasses.dataclass(frozen=True)
class CompressionSpace(ChooserSpace, JsonSpec):
    """Choices for compression; ``per_stage`` draws one setting per stage (stem and head too).

    Parameter names: ``compress.w_bits``, ``compress.a_bits``, ``compress.prune``,
    ``compress.granularity`` (global), or ``compress.<stage>.w_bits`` etc. per stage,
    with ``<stage>`` one of ``stem``, ``s0``, ``s1``, ..., ``head``. Granularity is
    always global. ``sample(trial, network)``, ``draw(rng, network)`` and
    ``from_params(params, network)`` take the network (a NetworkSpec) the policy is for.
    """

    OWNER = _OWNER

    w_bits: tuple = (4, 8, 16)
    a_bits: tuple = (8, 16)
    prune_ratios: tuple = (0.0, 0.25, 0.5)
    granularities: tuple = GRANULARITIES
    per_stage: bool = False

    def __post_init__(self):
        set_ = lambda f, v: object.__setattr__(self, f, v)
        set_("w_bits", _choices("w_bits", self.w_bits, _BITS))
        set_("a_bits", _choices("a_bits", self.a_bits, _BITS))
        set_("prune_ratios", _choices("prune_ratios", self.prune_ratios, _PRUNE_RATIOS))
        set_("granularities", _choices("granularities", self.granularities, one_of(GRANULARITIES)))
        if not isinstance(self.per_stage, bool):
            raise ValueError(f"compression space: field 'per_stage' must be true or false, got {self.per_stage!r}")

    def build(self, choose: Chooser, network) -> CompressionPolicy:
        """A policy for ``network`` (a NetworkSpec) from a chooser ``choose(name, choices)``."""
        pick = asking_only_for_choices(choose)
        granularity = pick("compress.granularity", self.granularities)

        def setting(prefix: str) -> LayerCompression:
            return LayerCompression(pick(f"{prefix}.w_bits", self.w_bits), pick(f"{prefix}.a_bits", self.a_bits),
                                    pick(f"{prefix}.prune", self.prune_ratios), granularity)
        if not self.per_stage:
            return CompressionPolicy(setting("compress"))
        keys = ["stem"] + [f"s{s}" for s in range(len(network.stages))] + ["head"]
        return CompressionPolicy(NONE, {key: setting(f"compress.{key}") for key in keys})

    # sample / draw / from_params: ChooserSpace's, with the network as context.
    # to_dict / from_dict / to_json / from_json: JsonSpec's (tuples as JSON lists; unknown fields refused)


#: Weights 4/8/16 bits, activations 8/16, up to half the weights pruned.
DEFAULT_COMPRESSION_SPACE = CompressionSpace()
