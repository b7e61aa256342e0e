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
SqueezeNext-like (``squeezenext``) networks.

The input shape and class count (``resolutions``, ``in_channels``, ``num_classes``) are
the data's: left unset (None), an :class:`~codesign.Experiment` fills them from its
dataset (:meth:`NetworkSpace.for_data`); used on its own, an unset space takes the
embedded digits' shape (8x8x1, 10 classes).
"""

from __future__ import annotations

import dataclasses

from cost_models.specs import JsonSpec, known_fields
from search_spaces.choosers import Chooser, ChooserSpace, asking_only_for_choices, choices, integers, numbers, one_of
from search_spaces.networks import BLOCKS, NetworkSpec, Stage, Stem

_OWNER = "network space"
#: The embedded digits' shape: what an unset space builds outside an experiment.
DIGITS_RESOLUTION, DIGITS_CHANNELS, DIGITS_CLASSES = 8, 1, 10


def _choices(field: str, values, allowed, owner: str = _OWNER) -> tuple:
    return choices(owner, field, values, allowed, lone_value=True)


@dataclasses.dataclass(frozen=True)
class NetworkSpace(ChooserSpace, JsonSpec):
    """Choices for every network decision; each field is a tuple of allowed values."""

    OWNER = _OWNER

    blocks: tuple[str, ...] = ("dwsep", "fire", "squeezenext")
    stages: tuple[int, ...] = (2, 3)
    depths: tuple[int, ...] = (1, 2)
    widths: tuple[int, ...] = (16, 32, 64)
    kernels: tuple[int, ...] = (3, 5)
    expansions: tuple[float, ...] = (0.25,)
    stem_kernels: tuple[int, ...] = (3, 5)
    stem_widths: tuple[int, ...] = (16, 32)
    width_multipliers: tuple[float, ...] = (1.0,)
    resolutions: tuple[int, ...] | None = None  # None: the dataset's resolution
    num_classes: int | None = None  # None: the dataset's class count
    in_channels: int | None = None  # None: the dataset's channels
    min_map: int = 2

    def __post_init__(self):
        set_ = lambda f, v: object.__setattr__(self, f, v)
        set_("blocks", _choices("blocks", self.blocks, one_of(BLOCKS)))
        set_("stages", _choices("stages", self.stages, integers(1)))
        set_("depths", _choices("depths", self.depths, integers(1)))
        set_("widths", _choices("widths", self.widths, integers(4)))
        if any(w % 4 for w in self.widths):
            raise ValueError(f"network space: field 'widths' must hold multiples of 4 (fire and SqueezeNext "
                             f"blocks split them); got {self.widths}")
        set_("kernels", _choices("kernels", self.kernels, integers(among=(3, 5, 7))))
        set_("expansions", _choices("expansions", self.expansions, numbers(0.05)))
        set_("stem_kernels", _choices("stem_kernels", self.stem_kernels, integers(among=(3, 5, 7))))
        set_("stem_widths", _choices("stem_widths", self.stem_widths, integers(1)))
        set_("width_multipliers", _choices("width_multipliers", self.width_multipliers, numbers(0.05)))
        if self.resolutions is not None:
            set_("resolutions", _choices("resolutions", self.resolutions, integers(1)))
        for field, low in (("num_classes", 2), ("in_channels", 1), ("min_map", 1)):
            value = getattr(self, field)
            if value is None and field != "min_map":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"network space: field {field!r} must be an integer >= {low}, got {value!r}")

    # --- the data's shape ------------------------------------------------------------------
    def for_data(self, resolution: int, in_channels: int, num_classes: int, dataset: str = "the dataset") -> "NetworkSpace":
        """This space with the unset input shape and class count taken from the data; a ValueError when a
        field that is set cannot take the data (another resolution or channel count, fewer classes)."""
        given = {"resolutions": self.resolutions, "in_channels": self.in_channels, "num_classes": self.num_classes}
        if given["resolutions"] is not None and resolution not in given["resolutions"]:
            raise ValueError(f"{self.OWNER}: field 'resolutions' is {list(given['resolutions'])} but {dataset} has "
                             f"{resolution}x{resolution} images; leave it unset to take the dataset's")
        if given["resolutions"] is not None and len(given["resolutions"]) > 1:
            raise ValueError(f"{self.OWNER}: field 'resolutions' {list(given['resolutions'])} searches input sizes, "
                             f"but the training takes {dataset}'s images as they are ({resolution}x{resolution}); "
                             f"leave it unset")
        if given["in_channels"] is not None and given["in_channels"] != in_channels:
            raise ValueError(f"{self.OWNER}: field 'in_channels' is {given['in_channels']} but {dataset} has "
                             f"{in_channels}-channel images; leave it unset to take the dataset's")
        if given["num_classes"] is not None and given["num_classes"] < num_classes:
            raise ValueError(f"{self.OWNER}: field 'num_classes' is {given['num_classes']} but {dataset} has "
                             f"{num_classes} classes; leave it unset to take the dataset's")
        return dataclasses.replace(self, resolutions=(resolution,), in_channels=in_channels,
                                   num_classes=given["num_classes"] or num_classes)

    # --- one code path for trials, generators and parameter dicts -----------------------
    def build(self, choose: Chooser) -> NetworkSpec:
        """A NetworkSpec from a chooser ``choose(name, choices) -> value`` (unset data fields: 8x8x1, 10 classes)."""
        pick = asking_only_for_choices(choose)
        resolution = pick("net.resolution", self.resolutions or (DIGITS_RESOLUTION,))
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
        return NetworkSpec(stem, tuple(stages), head=head, resolution=resolution,
                           in_channels=self.in_channels or DIGITS_CHANNELS, num_classes=self.num_classes or DIGITS_CLASSES,
                           width_multiplier=pick("net.width_multiplier", self.width_multipliers), name="searched")

    # to_dict / from_dict / to_json / from_json: JsonSpec's (tuples as JSON lists; unknown fields refused)


@dataclasses.dataclass(frozen=True)
class NetworkVariantSpace(ChooserSpace, JsonSpec):
    """Variants of one macro-architecture: the first kernel, and per stage the depth and block type.

    The moves of the SqueezeNext co-design (Kwon et al., DAC'18, section 4.2) as a search space:
    the base network's widths, strides, pools and head stay; ``net.stem.kernel``,
    ``net.s<i>.depth`` and ``net.s<i>.block`` are searched for the stages in
    ``stages`` (default: every stage). A stage that stays fire keeps the base's squeeze
    ratio; one that becomes fire gets 1/8; squeezenext blocks have their own.
    """

    OWNER = "network variant space"

    base: NetworkSpec
    stem_kernels: tuple[int, ...] = (3, 5, 7)
    depths: tuple[int, ...] = (1, 2, 3, 4)
    blocks: tuple[str, ...] = ("fire", "squeezenext")
    stages: tuple[int, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.base, NetworkSpec):
            raise ValueError(f"{self.OWNER}: field 'base' must be a NetworkSpec, got {type(self.base).__name__}")
        set_ = lambda f, v: object.__setattr__(self, f, v)
        owner = self.OWNER
        set_("stem_kernels", _choices("stem_kernels", self.stem_kernels, integers(among=(3, 5, 7, 11)), owner))
        set_("depths", _choices("depths", self.depths, integers(1), owner))
        set_("blocks", _choices("blocks", self.blocks, one_of(BLOCKS), owner))
        indices = tuple(range(len(self.base.stages))) if self.stages is None else self.stages
        set_("stages", _choices("stages", indices, integers(among=tuple(range(len(self.base.stages)))), owner))

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
                raise ValueError(f"{self.OWNER}: the base network's {name}={base[name]!r} is not one of "
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
        data = known_fields(cls, data)
        if "base" not in data:
            raise ValueError(f"{cls.__name__}: field 'base' (the base network) is missing")
        return super().from_dict({**data, "base": NetworkSpec.from_dict(data["base"])})


#: MobileNet-, SqueezeNet- and SqueezeNext-like networks; an experiment fits them to its dataset.
DEFAULT_NETWORK_SPACE = NetworkSpace()
#: The same families at CIFAR size (3 channels, 32x32).
CIFAR_NETWORK_SPACE = NetworkSpace(resolutions=(32,), in_channels=3, stages=(3, 4), widths=(32, 64, 128))
