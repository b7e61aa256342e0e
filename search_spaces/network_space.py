"""The network search space: the ranges an experiment may override, turned into NetworkSpecs.

One function, :meth:`NetworkSpace.build`, walks the space asking a *chooser* for each
decision; an Optuna trial (``suggest_categorical``), a numpy generator and a plain
``trial.params`` dict are three choosers. So ``sample(trial)``, ``draw(rng)`` and
``from_params(trial.params)`` share one code path and a sampled spec is reproducible
from its parameters alone. Parameter names are stable and readable:
``net.stages``, ``net.stem.kernel``, ``net.s0.block``, ``net.s0.depth``, ...

Strides are not searched: each stage after the first halves the map while it is at
least ``min_map * 2`` wide, so every spec is valid at the space's resolution. The
default space holds MobileNet-like (``dwsep``), SqueezeNet-like (``fire``) and
SqueezeNext-like (``squeezenext``) networks, for the embedded digits data (8x8).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from search_spaces.choosers import Chooser, asking_only_for_choices, params_chooser, rng_chooser, trial_chooser
from search_spaces.networks import BLOCKS, NetworkSpec, Stage, Stem


def _choices(name: str, values, kind=int, low=None, allowed=None) -> tuple:
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not values:
        raise ValueError(f"network space: field {name!r} must be a non-empty tuple of choices")
    for v in values:
        ok = (isinstance(v, kind) or (kind is float and isinstance(v, int))) and not isinstance(v, bool)
        if not ok or (low is not None and v < low) or (allowed is not None and v not in allowed):
            what = f"one of {', '.join(map(str, allowed))}" if allowed else f"{kind.__name__} values" + (f" >= {low}" if low is not None else "")
            raise ValueError(f"network space: field {name!r} must hold {what}; got {v!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"network space: field {name!r} has repeated choices {values}")
    return values


class _ChooserSpace:
    """``sample`` / ``draw`` / ``from_params`` for a space whose ``build(choose)`` walks its decisions."""

    def build(self, choose: Chooser) -> NetworkSpec:
        raise NotImplementedError

    def sample(self, trial) -> NetworkSpec:
        """A spec from an Optuna trial (``suggest_categorical`` with stable names)."""
        return self.build(trial_chooser(trial))

    def draw(self, rng: np.random.Generator) -> NetworkSpec:
        """A uniformly drawn spec, without Optuna."""
        return self.build(rng_chooser(rng))

    def from_params(self, params: dict) -> NetworkSpec:
        """The spec a trial with these parameters sampled (other prefixes are ignored)."""
        return self.build(params_chooser(params, "network space"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True)
class NetworkSpace(_ChooserSpace):
    """Choices for every network decision; each field is a tuple of allowed values."""

    blocks: tuple[str, ...] = ("dwsep", "fire", "squeezenext")
    stages: tuple[int, ...] = (2, 3)
    depths: tuple[int, ...] = (1, 2)
    widths: tuple[int, ...] = (16, 32, 64)
    kernels: tuple[int, ...] = (3, 5)
    expansions: tuple[float, ...] = (0.25,)
    stem_kernels: tuple[int, ...] = (3, 5)
    stem_widths: tuple[int, ...] = (16, 32)
    width_multipliers: tuple[float, ...] = (1.0,)
    resolutions: tuple[int, ...] = (8,)
    num_classes: int = 10
    in_channels: int = 1
    min_map: int = 2

    def __post_init__(self):
        set_ = lambda f, v: object.__setattr__(self, f, v)
        set_("blocks", _choices("blocks", self.blocks, str, allowed=BLOCKS))
        set_("stages", _choices("stages", self.stages, int, low=1))
        set_("depths", _choices("depths", self.depths, int, low=1))
        set_("widths", _choices("widths", self.widths, int, low=4))
        if any(w % 4 for w in self.widths):
            raise ValueError(f"network space: field 'widths' must hold multiples of 4 (fire and SqueezeNext "
                             f"blocks split them); got {self.widths}")
        set_("kernels", _choices("kernels", self.kernels, int, allowed=(3, 5, 7)))
        set_("expansions", tuple(float(e) for e in _choices("expansions", self.expansions, float, low=0.05)))
        set_("stem_kernels", _choices("stem_kernels", self.stem_kernels, int, allowed=(3, 5, 7)))
        set_("stem_widths", _choices("stem_widths", self.stem_widths, int, low=1))
        set_("width_multipliers", tuple(float(w) for w in _choices("width_multipliers", self.width_multipliers, float, low=0.05)))
        set_("resolutions", _choices("resolutions", self.resolutions, int, low=1))
        for field, low in (("num_classes", 2), ("in_channels", 1), ("min_map", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"network space: field {field!r} must be an integer >= {low}, got {value!r}")

    # --- one code path for trials, generators and parameter dicts -----------------------
    def build(self, choose: Chooser) -> NetworkSpec:
        """A NetworkSpec from a chooser ``choose(name, choices) -> value``."""
        pick = asking_only_for_choices(choose)
        resolution = pick("net.resolution", self.resolutions)
        stem_kernel = pick("net.stem.kernel", self.stem_kernels)
        stem_stride = 2 if resolution >= 64 else 1
        stem = Stem(kernel=stem_kernel, stride=stem_stride, width=pick("net.stem.width", self.stem_widths),
                    pool="max3" if resolution >= 128 else "none")
        size = -(-resolution // stem_stride)
        if stem.pool != "none":
            size = -(-(size - 3) // 2) + 1
        stages = []
        for s in range(pick("net.stages", self.stages)):
            block = pick(f"net.s{s}.block", self.blocks)
            stride = 2 if s > 0 and size >= 2 * self.min_map else 1
            size = -(-size // stride)
            stages.append(Stage(
                block=block, depth=pick(f"net.s{s}.depth", self.depths), width=pick(f"net.s{s}.width", self.widths),
                kernel=pick(f"net.s{s}.kernel", self.kernels), stride=stride,
                expansion=pick(f"net.s{s}.expansion", self.expansions) if block in ("fire", "inverted") else 1.0))
        head = "conv" if stages[-1].block == "fire" else "fc"
        return NetworkSpec(stem, tuple(stages), head=head, resolution=resolution, in_channels=self.in_channels,
                           num_classes=self.num_classes,
                           width_multiplier=pick("net.width_multiplier", self.width_multipliers), name="searched")

    # --- data ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkSpace":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"network space: unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclasses.dataclass(frozen=True)
class NetworkVariantSpace(_ChooserSpace):
    """Variants of one macro-architecture: the first kernel, and per stage the depth and block type.

    The moves of the SqueezeNext co-design (seeds/002 section 4.2) as a search space:
    the base network's widths, strides, pools and head stay; ``net.stem.kernel``,
    ``net.s<i>.depth`` and ``net.s<i>.block`` are searched for the stages in
    ``stages`` (default: every stage). A stage that stays fire keeps the base's squeeze
    ratio; one that becomes fire gets 1/8; squeezenext blocks have their own.
    """

    base: NetworkSpec
    stem_kernels: tuple[int, ...] = (3, 5, 7)
    depths: tuple[int, ...] = (1, 2, 3, 4)
    blocks: tuple[str, ...] = ("fire", "squeezenext")
    stages: tuple[int, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.base, NetworkSpec):
            raise ValueError(f"network variant space: field 'base' must be a NetworkSpec, got {type(self.base).__name__}")
        set_ = lambda f, v: object.__setattr__(self, f, v)
        set_("stem_kernels", _choices("stem_kernels", self.stem_kernels, int, allowed=(3, 5, 7, 11)))
        set_("depths", _choices("depths", self.depths, int, low=1))
        set_("blocks", _choices("blocks", self.blocks, str, allowed=BLOCKS))
        indices = tuple(range(len(self.base.stages))) if self.stages is None else self.stages
        set_("stages", _choices("stages", indices, int, allowed=tuple(range(len(self.base.stages)))))

    def build(self, choose: Chooser) -> NetworkSpec:
        pick = asking_only_for_choices(choose)
        stem = dataclasses.replace(self.base.stem, kernel=pick("net.stem.kernel", self.stem_kernels))
        stages = []
        for s, stage in enumerate(self.base.stages):
            if s in self.stages:
                block = pick(f"net.s{s}.block", self.blocks)
                kept = block == stage.block
                expansion = stage.expansion if kept else (0.125 if block == "fire" else 1.0)
                stage = dataclasses.replace(stage, block=block, depth=pick(f"net.s{s}.depth", self.depths),
                                            expansion=expansion)
            stages.append(stage)
        return self.base.replace(stem=stem, stages=tuple(stages), name=f"{self.base.name}_variant")

    def base_params(self) -> dict:
        """The trial parameters under which :meth:`build` gives back the base network, e.g. to enqueue
        it as the first trial; only the decisions the space asks for (more than one option) appear."""
        base = {"net.stem.kernel": self.base.stem.kernel}
        for s, stage in enumerate(self.base.stages):
            base[f"net.s{s}.block"], base[f"net.s{s}.depth"] = stage.block, stage.depth
        asked = {}

        def answer(name, options):
            if base[name] not in options:
                raise ValueError(f"network variant space: the base network's {name}={base[name]!r} is not one of "
                                 f"{options}")
            asked[name] = base[name]
            return base[name]
        self.build(answer)
        return asked

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "stem_kernels": list(self.stem_kernels), "depths": list(self.depths),
                "blocks": list(self.blocks), "stages": list(self.stages)}

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkVariantSpace":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown or "base" not in data:
            raise ValueError(f"network variant space: unknown field(s) {sorted(unknown)} or no 'base'; "
                             f"allowed: {sorted(names)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "base"}
        return cls(NetworkSpec.from_dict(data["base"]), **values)


#: MobileNet-, SqueezeNet- and SqueezeNext-like networks for the 8x8 digits data.
DEFAULT_NETWORK_SPACE = NetworkSpace()
#: The same families at CIFAR size (3 channels, 32x32).
CIFAR_NETWORK_SPACE = NetworkSpace(resolutions=(32,), in_channels=3, stages=(3, 4), widths=(32, 64, 128))
