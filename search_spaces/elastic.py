"""One compiled network for a whole space: the elastic model and the encoding of a candidate.

An :class:`ElasticSpace` is a network space (plus the compression it may carry) at one
input resolution, with every shape at the space's maximum: per stage the most blocks,
the widest channels and the largest kernel, and every block type the stage allows. Its
layers are the union of the layer tables of its candidates, emitted by the same
``networks._block`` that builds a single network (with ``every_layer``), so a block type
is still written once.

A candidate (a ``NetworkSpec`` and a ``CompressionPolicy``) is an :class:`Encoding` of
arrays, not a new pytree shape: which blocks and layers are active, how many channels
each layer keeps, the kernel as the centre crop of the largest one, the block type per
stage, the number of stages, the head, per-layer weight and activation bits as numbers
(fake quantization with the bit width as a traced value; 0 is float), and the pruning
masks. :class:`ElasticNetwork` takes the encoding as an input, so one ``jax.jit`` per
(space, input shape, batch size) serves every candidate.

With a stand-alone model's variables copied in (:func:`embed`), the elastic model gives
the stand-alone model's logits to float tolerance: masked channels are exact zeros,
cropped and masked kernel entries take no part in the per-channel weight scales, and a
layer a candidate lacks passes its input through.

    >>> space = ElasticSpace.of(NetworkSpace(), CompressionSpace(), resolution=8)
    >>> spec = NetworkSpace().draw(np.random.default_rng(0))
    >>> encoding = space.encode(spec)                # arrays, the same shapes for every candidate
    >>> model = ElasticNetwork(space)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from search_spaces.compression import FLOAT, CompressionPolicy
from search_spaces.flax_models import FAST_COMPILE, _max_pool_ceil, _settings, activation_range, conv2d
from search_spaces.networks import LayerRow, NetworkSpec, Stage, _block, _Builder, layer_table

BLOCK_INPUT = "__block_input__"


@dataclasses.dataclass(frozen=True)
class StageSlot:
    """One stage of the elastic network: every block type it allows at its largest."""

    blocks: tuple[str, ...]
    depth: int  # the most blocks
    stride: int
    pool: str
    kernel: int  # the largest kernel
    stages: tuple[Stage, ...]  # per block type: the stage at its maxima (width before scaling)
    widths: tuple[int, ...]  # per block type: the scaled width at its maximum


@dataclasses.dataclass(frozen=True)
class ElasticSpace:
    """A network space's maxima at one resolution (see the module docstring)."""

    resolution: int
    in_channels: int
    num_classes: int
    stem: Any  # the stem at its maxima (Stem)
    stem_width: int  # scaled
    stages: tuple[StageSlot, ...]
    stage_counts: tuple[int, ...]
    width_multiplier: float  # the largest
    pruning: bool  # whether candidates may carry pruning masks

    # --- construction from a space ------------------------------------------------------------
    @classmethod
    def of(cls, network_space, compression_space=None, resolution: int | None = None) -> "ElasticSpace":
        """The elastic space of ``network_space`` (a NetworkSpace or NetworkVariantSpace) at ``resolution``.

        The space is walked once per block type with a chooser that takes the largest
        option of every decision (and that block type wherever it is allowed), recording
        every option it is offered.
        """
        asked: dict[str, set] = {}
        blocks = sorted(set(getattr(network_space, "blocks", ()))) or [None]
        specs = [network_space.build(_maximal_chooser(block, resolution, asked)) for block in blocks]
        largest = max(specs, key=lambda spec: len(spec.stages))
        for spec in specs:
            if spec.head not in ("fc", "conv") or spec.head_widths:
                raise ValueError(f"elastic network: head {spec.head!r} with hidden layers {spec.head_widths} is not "
                                 f"supported; allowed: 'fc' or 'conv' without hidden layers")
        slots = []
        for s, stage in enumerate(largest.stages):
            if stage.groups != 1:
                raise ValueError(f"elastic network: stage {s} is a grouped convolution (groups {stage.groups}); "
                                 f"allowed: groups 1")
            types = tuple(sorted(asked.get(f"net.s{s}.block", {stage.block})))
            depth = max(asked.get(f"net.s{s}.depth", {stage.depth}))
            kernel = max(asked.get(f"net.s{s}.kernel", {stage.kernel}))
            per_type = []
            for block in types:
                expansions = {sp.stages[s].expansion for sp in specs if len(sp.stages) > s and sp.stages[s].block == block}
                expansions |= asked.get(f"net.s{s}.expansion", set()) if block in ("fire", "inverted") else set()
                per_type.append(dataclasses.replace(stage, block=block, depth=depth, kernel=kernel,
                                                    expansion=max(expansions or {1.0})))
            widths = tuple(largest.scaled(st.width, _multiple(st.block)) for st in per_type)
            slots.append(StageSlot(types, depth, stage.stride, stage.pool, kernel, tuple(per_type), widths))
        stem = dataclasses.replace(largest.stem, kernel=max(asked.get("net.stem.kernel", {largest.stem.kernel})))
        stage_counts = tuple(sorted(asked.get("net.stages", {len(largest.stages)})))
        pruning = compression_space is not None and any(r > 0 for r in compression_space.prune_ratios)
        return cls(largest.resolution, largest.in_channels, largest.num_classes, stem,
                   largest.scaled(stem.width), tuple(slots), stage_counts, largest.width_multiplier, pruning)

    # --- the union of the candidates' layers -----------------------------------------------------
    @functools.cached_property
    def plan(self) -> "Plan":
        """The elastic network's layers: the stem, every (stage, block, type) slot, the exits and the heads."""
        b = _Builder(_probe_spec(self))
        b.conv("stem", self.stem_width, self.stem.kernel, stride=self.stem.stride, padding=self.stem.pad, stage=-1)
        b.pool("stem_pool", self.stem.pool, -1, 0)
        stem_rows = tuple(b.rows)
        blocks, exits = [], []
        for s, slot in enumerate(self.stages):
            out_channels = max(slot.widths)
            for i in range(slot.depth):
                C, H, W = b.C, b.H, b.W
                stride = slot.stride if i == 0 else 1
                per_type = []
                for stage, width in zip(slot.stages, slot.widths):
                    t = _Builder(b.spec)
                    t.C, t.H, t.W, t.tensor = C, H, W, (BLOCK_INPUT,)
                    _block(t, stage, s, i, width, stride, prefix=f"s{s}b{i}.{stage.block}", every_layer=True)
                    per_type.append(BlockType(stage.block, tuple(t.rows), t.tensor, t.C))
                    P, Q = t.H, t.W
                blocks.append(BlockSlot(s, i, C, out_channels, slot.kernel, tuple(per_type), (P, Q)))
                b.C, b.H, b.W = out_channels, P, Q
            pool = ()
            if slot.pool != "none":
                b.tensor = (f"s{s}_exit",)
                b.pool(f"s{s}_pool", slot.pool, s, slot.depth)
                pool = (b.rows.pop(),)
            exits.append(Exit(s, pool, b.C, b.H, b.W))
        return Plan(stem_rows, tuple(blocks), tuple(exits), max(e.channels for e in exits))

    # --- a candidate as arrays -------------------------------------------------------------------
    def encode(self, spec: NetworkSpec, compression: CompressionPolicy | None = None) -> dict:
        """The encoding of ``spec`` compressed by ``compression`` (numpy arrays; the same tree for every candidate).

        A spec outside the space's maxima is a ValueError naming the field and the range.
        """
        self.check(spec, compression)
        rows = {r.layer.name: r for r in layer_table(spec)}
        settings = _settings(spec, compression) if compression is not None and not compression.is_identity else {}
        plan = self.plan
        layers, real = {}, {BLOCK_INPUT: self.in_channels}
        for row in plan.stem_rows:
            _encode_row(layers, real, row, rows.get(row.layer.name), settings, self.pruning)
        channels = real[plan.stem_rows[-1].layer.name]
        blocks = {}
        for slot in plan.blocks:
            stage = spec.stages[slot.stage] if slot.stage < len(spec.stages) else None
            active = stage is not None and slot.index < stage.depth
            out = channels
            for kind in slot.types:
                chosen = active and kind.block == stage.block
                real[BLOCK_INPUT] = channels
                mapping = _standalone_names(kind, stage, slot) if chosen else {}
                for row in kind.rows:
                    _encode_row(layers, real, row, rows.get(mapping.get(row.layer.name, "")), settings, self.pruning,
                                used=chosen)
                index, mask, count = _gather(kind, real, slot.out_channels)
                blocks[f"s{slot.stage}b{slot.index}.{kind.block}"] = {"chosen": np.bool_(chosen), "gather": index,
                                                                      "mask": mask}
                out = count if chosen else out
            channels = out
            blocks[f"s{slot.stage}b{slot.index}"] = {"active": np.bool_(active), "channels": np.int32(channels)}
        head_conv = spec.head == "conv"
        for name, used in (("classifier", head_conv), ("fc", not head_conv)):
            layers[name] = _row_code(rows.get(name), settings.get(name), self._head_shape(name), self.pruning, used)
        return {"layers": layers, "blocks": blocks, "head_conv": np.bool_(head_conv),
                "exit": np.eye(len(self.stages), dtype=np.float32)[len(spec.stages) - 1]}

    def _head_shape(self, name: str) -> tuple[int, ...]:
        C = self.plan.channels
        return (1, 1, C, self.num_classes) if name == "classifier" else (C, self.num_classes)

    def check(self, spec: NetworkSpec, compression: CompressionPolicy | None) -> None:
        """A ValueError naming the field and the elastic space's range when ``spec`` does not fit."""
        def bad(field, value, allowed):
            raise ValueError(f"elastic network: {field} {value!r} is outside the space; allowed: {allowed}")
        if (spec.resolution, spec.in_channels) != (self.resolution, self.in_channels):
            bad("input", f"{spec.resolution}x{spec.resolution}x{spec.in_channels}",
                f"{self.resolution}x{self.resolution}x{self.in_channels}")
        if spec.num_classes != self.num_classes:
            bad("num_classes", spec.num_classes, self.num_classes)
        if len(spec.stages) not in self.stage_counts:
            bad("number of stages", len(spec.stages), self.stage_counts)
        if spec.stem.kernel > self.stem.kernel or spec.scaled(spec.stem.width) > self.stem_width:
            bad("stem", (spec.stem.kernel, spec.scaled(spec.stem.width)),
                f"kernel <= {self.stem.kernel}, width <= {self.stem_width}")
        if (spec.stem.stride, spec.stem.pool) != (self.stem.stride, self.stem.pool):
            bad("stem stride/pool", (spec.stem.stride, spec.stem.pool), (self.stem.stride, self.stem.pool))
        for s, stage in enumerate(spec.stages):
            slot = self.stages[s]
            if stage.block not in slot.blocks:
                bad(f"net.s{s}.block", stage.block, slot.blocks)
            limit = slot.stages[slot.blocks.index(stage.block)]
            width = spec.scaled(stage.width, _multiple(stage.block))
            for field, value, high in (("depth", stage.depth, slot.depth), ("kernel", stage.kernel, slot.kernel),
                                       ("width", width, slot.widths[slot.blocks.index(stage.block)]),
                                       ("expansion", stage.expansion if stage.block in ("fire", "inverted") else 0,
                                        limit.expansion)):
                if value > high:
                    bad(f"net.s{s}.{field}", value, f"<= {high}")
            if (stage.stride, stage.pool, stage.groups) != (slot.stride, slot.pool, 1):
                bad(f"net.s{s}.stride/pool", (stage.stride, stage.pool), (slot.stride, slot.pool))
        if compression is not None:
            for name, setting in _settings(spec, compression).items():
                if setting.pruned and not self.pruning:
                    bad(f"pruning of {name}", setting.prune_ratio, "none (the compression space prunes nothing)")


@dataclasses.dataclass(frozen=True)
class BlockType:
    block: str
    rows: tuple[LayerRow, ...]
    output: tuple[str, ...]  # the producers of the block's output (concatenated)
    channels: int  # the output's channels at the maximum


@dataclasses.dataclass(frozen=True)
class BlockSlot:
    stage: int
    index: int
    in_channels: int
    out_channels: int
    kernel: int  # the stage's largest kernel
    types: tuple[BlockType, ...]
    size: tuple[int, int]  # the output's height and width


@dataclasses.dataclass(frozen=True)
class Exit:
    stage: int
    pool: tuple[LayerRow, ...]
    channels: int
    H: int
    W: int


@dataclasses.dataclass(frozen=True)
class Plan:
    stem_rows: tuple[LayerRow, ...]
    blocks: tuple[BlockSlot, ...]
    exits: tuple[Exit, ...]
    channels: int  # the most channels at any exit (the heads' input)


def _maximal_chooser(block, resolution, asked: dict):
    """A chooser that records every option it is offered and picks the largest (``block`` where allowed)."""
    def choose(name, options):
        if name == "net.resolution":
            if resolution is None:
                if len(options) > 1:
                    raise ValueError(f"elastic network: the space has resolutions {options}; pass resolution=")
                return options[0]
            if resolution not in options:
                raise ValueError(f"elastic network: resolution {resolution} is not in the space's {options}")
            return resolution
        asked.setdefault(name, set()).update(options)
        if name.endswith(".block"):
            return block if block in options else options[0]
        return max(options)
    return choose


def _probe_spec(space: ElasticSpace) -> NetworkSpec:
    """A spec that only names the network for the builder's error messages."""
    return NetworkSpec(space.stem, (space.stages[0].stages[0],), resolution=space.resolution,
                       in_channels=space.in_channels, num_classes=space.num_classes, name="elastic")


def _standalone_names(kind: BlockType, stage: Stage, slot: BlockSlot) -> dict[str, str]:
    """Union row name -> the stand-alone network's layer name, for the block the candidate has here."""
    prefix_u = f"s{slot.stage}b{slot.index}.{kind.block}_"
    prefix_s = f"s{slot.stage}b{slot.index}_"
    out = {}
    for row in kind.rows:
        suffix = row.layer.name[len(prefix_u):]
        kmax, k = slot.kernel, stage.kernel
        for a, c in ((f"{kmax}x{kmax}", f"{k}x{k}"), (f"{kmax}x1", f"{k}x1"), (f"1x{kmax}", f"1x{k}")):
            if suffix.endswith(a) and not suffix.endswith("1x1"):
                suffix = suffix[:-len(a)] + c
                break
        out[row.layer.name] = prefix_s + suffix
    return out


def _multiple(block: str) -> int:
    """The channel multiple a block type's width is rounded to (as ``layer_table`` rounds it)."""
    return 4 if block in ("fire", "squeezenext") else 1


def _bits(value) -> int:
    return 0 if value == FLOAT else int(value)


def _row_code(row: LayerRow | None, setting, shape: tuple[int, ...], pruning: bool, used: bool) -> dict:
    """The arrays of one union layer: channels kept, kernel crop, bits, presence, pruning mask."""
    code = {"out": np.int32(row.layer.K if row is not None else 0), "present": np.bool_(row is not None),
            "used": np.bool_(used and row is not None),
            "ksize": np.array([row.layer.R, row.layer.S] if row is not None else [0, 0], np.int32),
            "w_bits": np.int32(_bits(setting.w_bits) if setting is not None else 0),
            "a_bits": np.int32(_bits(setting.a_bits) if setting is not None else 0),
            "channel_pruned": np.bool_(setting is not None and setting.pruned and setting.granularity == "channel")}
    if pruning:
        code["prune"] = np.ones(shape, np.float32)
        code["pruned"] = np.bool_(setting is not None and setting.pruned)
        code["ratio"] = np.float32(setting.prune_ratio if setting is not None and setting.pruned else 0.0)
    return code


def _encode_row(layers: dict, real: dict, row: LayerRow, standalone: LayerRow | None, settings: Mapping, pruning: bool,
                used: bool = True) -> None:
    """Encode one union row and record its real output channels (a missing layer passes its input through)."""
    name = row.layer.name
    setting = settings.get(standalone.layer.name) if standalone is not None else None
    if row.op in ("conv", "fc"):
        shape = (row.layer.R, row.layer.S, row.layer.C // row.layer.groups, row.layer.K)
        layers[name] = _row_code(standalone, setting, shape, pruning, used)
    elif row.op == "add":
        layers[name] = {"present": np.bool_(standalone is not None)}
    if standalone is not None:
        real[name] = standalone.layer.K
    elif row.op == "add":
        real[name] = min(sum(real[p] for p in row.operands[0]), row.layer.K)
    else:  # passed through, cut to the layer's channels
        real[name] = min(sum(real[p] for p in row.inputs), row.layer.K)


def interleaved(counts: Sequence[int]) -> list[tuple[int, int]]:
    """The (producer, channel) pairs of a concatenation of ``counts`` channels in the elastic layout: channel
    by channel, the producers alternating (a fire block's 1x1 and k x k expands: 1x1 #0, kxk #0, 1x1 #1, ...).

    A fire block's expands have ``width / 2`` channels each, so every width's output is a prefix of the
    largest width's: an elastic channel means the same expand channel in every candidate, and the next
    layer's weights for it are shared by candidates that agree on what it is (width-consistent sharing).
    The stand-alone model concatenates instead (all of the 1x1, then all of the k x k); :func:`embed` and
    :func:`extract` reorder the channels between the two layouts (:func:`channel_orders`).
    """
    return sorted(((j, k) for j, n in enumerate(counts) for k in range(n)), key=lambda pair: (pair[1], pair[0]))


def _gather(kind: BlockType, real: Mapping[str, int], channels: int):
    """Channel index and mask that turn the block's output (producers at their maxima, concatenated) into
    the elastic layout (the producers' real channels, :func:`interleaved`)."""
    maxima = {r.layer.name: r.layer.K for r in kind.rows}
    offsets = np.cumsum([0] + [maxima[p] for p in kind.output])
    pairs = interleaved([real.get(producer, 0) for producer in kind.output])
    index = [int(offsets[j]) + k for j, k in pairs][:channels]
    out = len(index)
    mask = np.zeros(channels, np.float32)
    mask[:out] = 1.0
    return np.array(index + [0] * (channels - out), np.int32), mask, out


# --- the elastic Flax model --------------------------------------------------------------------------
def _channel_mask(count, size):
    return (jnp.arange(size) < count).astype(jnp.float32)


def _kernel_mask(ksize, shape):
    """1 inside the centred ksize crop of a (R, S, ...) kernel."""
    R, S = shape[0], shape[1]
    rows = jnp.abs(jnp.arange(R) - R // 2) <= ksize[0] // 2
    cols = jnp.abs(jnp.arange(S) - S // 2) <= ksize[1] // 2
    return (rows[:, None] & cols[None, :]).astype(jnp.float32).reshape((R, S) + (1,) * (len(shape) - 2))


def _quantize(x, bits, scale):
    """``fake_quantize`` with a traced bit width; 0 bits leaves ``x`` in float."""
    levels = _levels(bits)
    scale = jnp.maximum(scale, 1e-8)
    q = jnp.clip(jnp.round(x / scale), -levels, levels) * scale
    return jnp.where(bits > 0, x + jax.lax.stop_gradient(q - x), x)


def _quantize_weights(kernel, bits):
    """Per-output-channel (last axis) fake quantization with a traced bit width (0: float)."""
    axes = tuple(range(kernel.ndim - 1))
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(kernel), axis=axes, keepdims=True)) / _levels(bits)
    return _quantize(kernel, bits, scale)


def _levels(bits):
    """2^(bits-1) - 1, exactly (an integer shift: a float power of a traced exponent is not exact)."""
    return (jnp.left_shift(1, jnp.maximum(bits, 2) - 1) - 1).astype(jnp.float32)


def magnitude_mask(kernel, active, ratio, channel):
    """``compression.magnitude_mask`` in the graph, on the ``active`` entries of an elastic kernel.

    Unstructured: the ``floor(n * ratio)`` smallest of the ``n`` active weights are pruned.
    Channel (``channel`` true): of the ``c`` active output channels (last axis), the
    ``c - kept_channels(c, ratio)`` with the smallest L2 norms. The ratio, the active
    region and the granularity are traced, so one compiled network prunes every
    candidate. A weight (channel) tied with the threshold is kept, where the stand-alone
    model breaks ties by position.
    """
    kernel = jax.lax.stop_gradient(kernel)
    active = jnp.broadcast_to(active, kernel.shape) > 0
    magnitude = jnp.where(active, jnp.abs(kernel), jnp.inf)
    n_prune = jnp.floor(active.sum() * ratio + 1e-6).astype(jnp.int32)
    unstructured = magnitude >= jnp.sort(magnitude.ravel())[n_prune]
    K = kernel.shape[-1]
    live = active.reshape(-1, K).any(axis=0)
    norms = jnp.where(live, jnp.sqrt((jnp.where(active, kernel, 0.0).reshape(-1, K) ** 2).sum(axis=0)), jnp.inf)
    channels = live.sum()
    drop = channels - jnp.maximum(1, channels - jnp.floor(channels * ratio + 1e-6).astype(jnp.int32))
    kept = norms >= jnp.sort(norms)[drop]
    return jnp.where(channel, jnp.broadcast_to(kept, kernel.shape), unstructured).astype(jnp.float32)


def _prune_mask(kernel, active, code, magnitude: bool):
    """The pruning mask of a layer: the encoding's (``prune``), or its magnitude mask computed here."""
    mask = magnitude_mask(kernel, active, code["ratio"], code["channel_pruned"]) if magnitude else code["prune"]
    return jnp.where(code["pruned"], mask, 1.0)


def _fit_channels(x, channels: int):
    """``x`` with its channel axis cut or zero-padded to ``channels`` (the real channels come first)."""
    C = x.shape[-1]
    if C >= channels:
        return x[..., :channels]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, channels - C)])


class ElasticLayer(nn.Module):
    """A convolution with batch norm at its maximum shape, cut by its code (channels, kernel crop, bits, mask)."""

    row: LayerRow
    shape: tuple[int, ...]
    magnitude_pruning: bool = False
    calibrating: bool = False

    @nn.compact
    def __call__(self, x, code, in_count, train: bool):
        row, shape = self.row, self.shape
        K = shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        mask = _channel_mask(code["out"], K)
        mask_in = _kernel_mask(code["ksize"], shape)
        if row.layer.groups == 1:
            mask_in = mask_in * _channel_mask(in_count, shape[2])[:, None]
        kernel = kernel * mask_in * mask
        if "prune" in code:
            prune = _prune_mask(kernel, mask_in * mask, code, self.magnitude_pruning)
            kernel = kernel * prune
        kernel = _quantize_weights(kernel, code["w_bits"])
        value_range = activation_range(self, jax.lax.stop_gradient(jnp.max(jnp.abs(x))), train)
        xq = _quantize(x, code["a_bits"], value_range / _levels(code["a_bits"]))
        pad = row.padding
        y = conv2d(xq, kernel, row.layer.stride, ((pad[0], pad[0]), (pad[1], pad[1])), row.layer.groups)
        y = nn.BatchNorm(use_running_average=not train, momentum=0.0 if self.calibrating else 0.9)(y)
        y = nn.relu(y) if row.relu else y
        if "prune" in code:  # a channel-pruned layer's pruned channels are gone after batch norm and ReLU
            kept = prune.reshape(-1, K).max(axis=0)
            mask = mask * jnp.where(code["channel_pruned"], kept, 1.0)
        return y * mask


class ElasticHead(nn.Module):
    """The classifier on one of several exits: a 1x1 convolution then global average pooling (``conv``), or
    global average pooling then a fully connected layer (``fc``), with bias; compressed by its code.

    The exits are the maps after each stage; ``weights`` (one-hot) picks the candidate's.
    The 1x1 convolution commutes with the average, so both heads quantize the chosen
    exit's activations, pool them and apply one matrix.
    """

    conv: bool
    channels: int
    classes: int
    magnitude_pruning: bool = False

    @nn.compact
    def __call__(self, exits, counts, weights, code, train: bool):
        C, K = self.channels, self.classes
        shape = (1, 1, C, K) if self.conv else (C, K)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        count = sum(w * c for w, c in zip(weights, counts))
        mask_in = _channel_mask(count, C).reshape((1, 1, C, 1) if self.conv else (C, 1))
        kernel = kernel * mask_in
        if "prune" in code:
            kernel = kernel * _prune_mask(kernel, mask_in, code, self.magnitude_pruning)
        kernel = _quantize_weights(kernel, code["w_bits"]).reshape((C, K))
        maps = [_fit_channels(x, C) for x in exits]
        if not self.conv:
            maps = [jnp.mean(x, axis=(1, 2)) for x in maps]
        current = jax.lax.stop_gradient(sum(w * jnp.max(jnp.abs(x)) for w, x in zip(weights, maps)))
        scale = activation_range(self, current, train) / _levels(code["a_bits"])
        pooled = [_quantize(x, code["a_bits"], scale) for x in maps]
        if self.conv:
            pooled = [jnp.mean(x, axis=(1, 2)) for x in pooled]
        features = sum(w * x for w, x in zip(weights, pooled))
        return features @ kernel.astype(features.dtype) + self.param("bias", nn.initializers.zeros, (K,))


class ElasticNetwork(nn.Module):
    """The elastic network of an :class:`ElasticSpace`: ``model.apply(variables, x, encoding, train=...)``.

    ``magnitude_pruning``: a pruned layer's mask is computed from its weights' magnitudes
    in the graph (a weight-sharing supernet's candidates), not read from the encoding.
    ``calibrating``: in training mode, batch norm and activation ranges take the batch's
    statistics as they are (momentum 0), to recalibrate a candidate's statistics.
    """

    space: ElasticSpace
    magnitude_pruning: bool = False
    calibrating: bool = False

    @nn.compact
    def __call__(self, x, encoding, train: bool = False):
        plan = self.space.plan
        layers, blocks = encoding["layers"], encoding["blocks"]
        x, count = self._rows(plan.stem_rows, x, self.space.in_channels, layers, train)
        exits, counts = [], []
        for slot in plan.blocks:
            block_in, key = x, f"s{slot.stage}b{slot.index}"
            y = self._block(slot, block_in, count, layers, blocks, train)
            x = y if slot.index == 0 else jnp.where(blocks[key]["active"], y, block_in)
            count = blocks[key]["channels"]
            if slot.index == self.space.stages[slot.stage].depth - 1:  # the stage's exit
                for row in plan.exits[slot.stage].pool:
                    x = _max_pool_ceil(x, row.layer.R)
                exits.append(x)
                counts.append(count)
        weights = encoding["exit"]
        conv = ElasticHead(True, plan.channels, self.space.num_classes, self.magnitude_pruning, name="classifier")
        fc = ElasticHead(False, plan.channels, self.space.num_classes, self.magnitude_pruning, name="fc")
        return jnp.where(encoding["head_conv"], conv(exits, counts, weights, layers["classifier"], train),
                         fc(exits, counts, weights, layers["fc"], train))

    def _block(self, slot: "BlockSlot", x, count, layers, blocks, train):
        """The output of the block type the candidate has in ``slot`` (zeros when it has none there).

        Only that block type is computed: the types are the branches of one ``nn.switch``
        (a conditional in the compiled program), with a last branch of zeros for a slot the
        candidate leaves empty. Under ``jax.vmap`` the switch becomes a select of every
        branch, which gives the same values. At initialisation every branch runs once, so
        every type's variables exist.
        """
        key = f"s{slot.stage}b{slot.index}"

        def branch(kind):
            def run(module, x):
                code = blocks[f"{key}.{kind.block}"]
                out, _ = module._rows(kind.rows, x, count, layers, train, kind.output)
                return jnp.take(out, code["gather"], axis=-1) * code["mask"]
            return run

        branches = [branch(kind) for kind in slot.types]
        if self.is_initializing():
            return sum(run(self, x) for run in branches) * 0.0
        shape = x.shape[:1] + slot.size + (slot.out_channels,)
        branches.append(lambda module, x: jnp.zeros(shape, x.dtype))
        chosen = jnp.stack([blocks[f"{key}.{kind.block}"]["chosen"] for kind in slot.types])
        index = jnp.where(chosen.any(), jnp.argmax(chosen), len(slot.types))
        return nn.switch(index, branches, self, x)

    def _rows(self, rows, x, in_count, layers, train, output=None):
        """Interpret union rows; returns the output (or the producers ``output``, concatenated) and its channels."""
        outputs, counts = {BLOCK_INPUT: x}, {BLOCK_INPUT: in_count}
        y, count = x, in_count
        for row in rows:
            name = row.layer.name
            if row.op == "add":
                first, second = (_fit_channels(_read(outputs, p, x), row.layer.K) for p in row.operands)
                y = first + jnp.where(layers[name]["present"], second, 0.0)
                y = nn.relu(y) if row.relu else y
                count = sum(counts[p] for p in row.operands[0])
            elif row.op == "max_pool":
                y = _max_pool_ceil(_read(outputs, row.inputs, x), row.layer.R)
                count = sum(counts[p] for p in row.inputs) if row.inputs else in_count
            else:
                inp = _read(outputs, row.inputs, x)
                count_in = sum(counts[p] for p in row.inputs) if row.inputs else in_count
                code = layers[name]
                if row.layer.groups > 1:  # depthwise: it keeps the channels that come in
                    code = {**code, "out": count_in}
                shape = (row.layer.R, row.layer.S, row.layer.C // row.layer.groups, row.layer.K)
                y = ElasticLayer(row, shape, self.magnitude_pruning, self.calibrating, name=name)(inp, code, count_in, train)
                stride = row.layer.stride  # a layer a candidate lacks passes its input through
                y = jnp.where(code["present"], y, _fit_channels(inp[:, ::stride, ::stride], row.layer.K))
                count = jnp.where(code["present"], code["out"], count_in)
            outputs[name], counts[name] = y, count
        if output is not None:
            return _read(outputs, output, x), None
        return y, count


def _read(outputs, producers, x):
    if not producers:
        return x
    parts = [outputs[p] for p in producers]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


# --- a stand-alone model's variables in the elastic model ---------------------------------------------
def embed(space: ElasticSpace, spec: NetworkSpec, standalone: Mapping, elastic: Mapping) -> dict:
    """``elastic`` variables with a stand-alone model's ``params`` and ``batch_stats`` copied into the candidate's part.

    Channels and kernel entries the candidate does not use keep their ``elastic`` values
    (its encoding masks them); pruning masks go into the encoding (:func:`encode_masks`).
    Channels are reordered where the two layouts differ (:func:`channel_orders`).
    """
    out = jax.tree_util.tree_map(np.array, {k: v for k, v in elastic.items()})
    orders = channel_orders(spec)
    for name, union in union_names(space, spec).items():
        for collection in ("params", "batch_stats"):
            source = standalone.get(collection, {}).get(name)
            if source is not None:
                _copy_tree(out[collection][union], source, orders.get(name, {}))
    return out


def channel_orders(spec: NetworkSpec) -> dict[str, dict[str, np.ndarray]]:
    """Per stand-alone layer whose channels the elastic network orders differently, ``{"in": order}`` (the
    kernel's input channels) and/or ``{"out": order}`` (its output channels and batch norm), with
    ``order[p]`` the stand-alone channel at elastic position ``p``.

    The layouts differ after a concatenation (:func:`interleaved`): the layers reading it see its
    channels reordered, a depthwise convolution or a pooling passes the order on, and an addition of
    such a map to a convolution's output (an identity shortcut) has that convolution's output channels
    follow the same order.
    """
    rows = layer_table(spec)
    channels = {r.layer.name: r.layer.K for r in rows}
    tensors: dict[str, np.ndarray | None] = {}  # producer -> the order of its output (None: as stand-alone)
    orders: dict[str, dict[str, np.ndarray]] = {}

    def read(producers) -> np.ndarray | None:
        if len(producers) > 1:
            offsets = np.cumsum([0] + [channels[p] for p in producers])
            return np.array([offsets[j] + k for j, k in interleaved([channels[p] for p in producers])])
        return tensors.get(producers[0]) if producers else None

    for row in rows:
        name = row.layer.name
        if row.op == "add":
            parts = [read(operand) for operand in row.operands]
            order = next((o for o in parts if o is not None), None)
            for operand, part in zip(row.operands, parts):
                if order is not None and part is None:
                    _follow(orders, tensors, rows, operand, order, name)
                elif part is not None and not np.array_equal(part, order):
                    raise ValueError(f"elastic network: the operands of {name} are in different channel orders")
            tensors[name] = order
        elif row.op in ("max_pool", "avg_pool"):
            tensors[name] = read(row.inputs)
        else:  # conv, fc
            order = read(row.inputs)
            depthwise = row.layer.groups > 1
            if order is not None:
                orders[name] = {"out" if depthwise else "in": order}
            tensors[name] = order if depthwise else None
    return orders


def _follow(orders, tensors, rows, operand: tuple[str, ...], order: np.ndarray, add: str) -> None:
    """Give the convolution producing ``operand`` (in stand-alone order) the output order ``order``."""
    row = next((r for r in rows if (r.layer.name,) == tuple(operand)), None)
    if row is None or row.op not in ("conv", "fc") or row.layer.groups > 1 or "out" in orders.get(row.layer.name, {}):
        raise ValueError(f"elastic network: cannot align the channel orders of the operands of {add}")
    orders.setdefault(row.layer.name, {})["out"] = order
    tensors[row.layer.name] = order


def union_names(space: ElasticSpace, spec: NetworkSpec) -> dict[str, str]:
    """The stand-alone network's layer name -> the elastic layer it occupies."""
    names = {"stem": "stem", "classifier": "classifier", "fc": "fc"}
    for slot in space.plan.blocks:
        if slot.stage < len(spec.stages) and slot.index < spec.stages[slot.stage].depth:
            stage = spec.stages[slot.stage]
            kind = next(k for k in slot.types if k.block == stage.block)
            names.update({s: u for u, s in _standalone_names(kind, stage, slot).items()})
    return names


def _copy_tree(target: dict, source: Mapping, orders: Mapping[str, np.ndarray], channel_wise: bool = False) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping):
            _copy_tree(target[key], value, orders, channel_wise or key.startswith("BatchNorm"))
            continue
        value = np.asarray(value)
        destination = target[key]
        if value.ndim == 0:
            target[key] = np.asarray(value, destination.dtype)
            continue
        target[key] = _place(destination, value, _axes(orders, key, value.ndim, channel_wise))


def _axes(orders: Mapping[str, np.ndarray], key: str, ndim: int, channel_wise: bool) -> dict[int, np.ndarray]:
    """The axes of a layer's variable that :func:`channel_orders` reorders: a kernel's input and output
    channels (a fully connected kernel is (in, out)), batch norm's channels."""
    if key == "kernel":
        return {axis: orders[side] for side, axis in (("in", ndim - 2), ("out", ndim - 1)) if side in orders}
    if channel_wise and ndim == 1 and "out" in orders:
        return {0: orders["out"]}
    return {}


def _region(big: tuple[int, ...], small: tuple[int, ...]) -> tuple[slice, ...]:
    """Where an array of shape ``small`` sits in one of shape ``big``: kernels centred on the spatial axes,
    channels from the start."""
    index = []
    for axis, (b, s) in enumerate(zip(big, small)):
        start = (b - s) // 2 if len(small) == 4 and axis < 2 else 0
        index.append(slice(start, start + s))
    return tuple(index)


def _place(destination: np.ndarray, value: np.ndarray, axes: Mapping[int, np.ndarray] = {}) -> np.ndarray:
    """``value`` written into its region of ``destination`` (:func:`_region`), its channels on ``axes`` put in
    the elastic order (``order[p]``: the stand-alone channel at elastic position ``p``)."""
    for axis, order in axes.items():
        value = np.take(value, order, axis=axis)
    destination = np.array(destination)
    destination[_region(destination.shape, value.shape)] = value
    return destination


def encode_masks(space: ElasticSpace, spec: NetworkSpec, encoding: dict, masks: Mapping) -> dict:
    """``encoding`` with a stand-alone model's pruning ``masks`` (its ``masks`` collection) in the layers' ``prune``."""
    names, orders = union_names(space, spec), channel_orders(spec)
    layers = {k: dict(v) for k, v in encoding["layers"].items()}
    for name, mask in masks.items():
        union, kernel = names[name], np.asarray(mask["kernel"])
        layers[union]["prune"] = _place(np.zeros_like(layers[union]["prune"]), kernel,
                                        _axes(orders.get(name, {}), "kernel", kernel.ndim, False))
    return {**encoding, "layers": layers}


def stack(encodings: list[dict]) -> dict:
    """Encodings of several candidates stacked on a leading axis (for ``jax.vmap``)."""
    return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *encodings)


def init(space: ElasticSpace, seed: int = 0, batch: int = 1) -> dict:
    """The elastic network's variables at their maxima.

    Compiled (cheaply) once per call: run op by op, the initialisation of every block type
    of a large space takes several times longer than compiling it.
    """
    return jax.jit(_initialiser(space, batch), compiler_options=FAST_COMPILE)(jax.random.key(seed))


def _initialiser(space: ElasticSpace, batch: int = 1):
    """``key -> variables`` of the elastic network at its maxima."""
    model = ElasticNetwork(space)
    x = jnp.zeros((batch, space.resolution, space.resolution, space.in_channels), jnp.float32)
    encoding = _largest_encoding(space)
    return lambda key: model.init(key, x, encoding, train=False)


@functools.lru_cache(maxsize=8)
def zero_variables(space: ElasticSpace) -> dict:
    """The elastic network's variables as zeros (their shapes and dtypes, without running the initialisers)."""
    shapes = jax.eval_shape(_initialiser(space), jax.random.key(0))
    return jax.tree_util.tree_map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), dict(shapes))


def _largest_encoding(space: ElasticSpace) -> dict:
    """Some valid encoding (shapes only matter for initialisation)."""
    return space.encode(*first_candidate(space))


def first_candidate(space: ElasticSpace) -> tuple[NetworkSpec, None]:
    """Some candidate of the space (its smallest network of the first block types, uncompressed)."""
    return _first_spec(space), None


def _first_spec(space: ElasticSpace) -> NetworkSpec:
    stages = tuple(dataclasses.replace(slot.stages[0], depth=1) for slot in space.stages[:min(space.stage_counts)])
    head = "conv" if stages[-1].block == "fire" else "fc"
    return NetworkSpec(space.stem, stages, head=head, resolution=space.resolution, in_channels=space.in_channels,
                       num_classes=space.num_classes, width_multiplier=space.width_multiplier, name="elastic")



# --- a candidate's own variables out of the elastic ones ---------------------------------------------
def extract(space: ElasticSpace, spec: NetworkSpec, elastic: Mapping, template: Mapping) -> dict:
    """The stand-alone model's ``params`` and ``batch_stats``, read out of ``elastic`` variables (the inverse of
    :func:`embed`). ``template`` is the stand-alone model's variable tree (arrays or shapes): only what it has is
    read, each kernel as its centre crop and its first channels."""
    names, orders = union_names(space, spec), channel_orders(spec)
    out = {}
    for collection in ("params", "batch_stats"):
        if collection in template:
            out[collection] = {name: _take(elastic[collection][names[name]], value, orders.get(name, {}))
                               for name, value in template[collection].items()}
    return out


def _take(elastic, template, orders: Mapping[str, np.ndarray], channel_wise: bool = False, key: str = ""):
    if isinstance(template, Mapping):
        return {k: _take(elastic[k], value, orders, channel_wise or k.startswith("BatchNorm"), k)
                for k, value in template.items()}
    elastic = np.asarray(elastic)
    value = elastic[_region(elastic.shape, tuple(template.shape))]
    for axis, order in _axes(orders, key, value.ndim, channel_wise).items():
        value = np.take(value, np.argsort(order), axis=axis)  # back to the stand-alone order
    return value.astype(template.dtype)
