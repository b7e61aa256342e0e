"""The cost model's numbers are pinned to its version: a change of any cost needs a new COST_MODEL_VERSION.

Studies store the cost report they ranked designs on with the version that computed it
(``codesign.results.Design.cost_report`` warns when it differs from the installed
model). This digest of the model's outputs on fixed networks and accelerators fails when
the numbers change under the same version: bump ``cost_models/version.py`` and record
the new digest here.
"""

import hashlib

from cost_models import Accelerator, Workload, conv, evaluate
from cost_models.version import COST_MODEL_VERSION
from search_spaces.compression import CompressionPolicy
from search_spaces.reference import reference_network

#: version -> digest of :func:`outputs`. (Version 1 was re-recorded when report totals became float64
#: sums of the rows: the per-layer numbers of the previous implementation give this same digest.
#: Version 2 costs pooling and element-wise layers of a compressed network at the float width: the
#: model does not quantize what they read. Version 3 divides integers exactly where XLA's reciprocal
#: moved a quotient such as 42 / 7 past its integer (a fold too many on arrays of 7, 12, 14 ... PEs a
#: side); the 14x12 accelerator was added with it, so versions 1 and 2 digest the first three only.
#: Version 4 times a layer that fits no tiling of the buffer by its DRAM traffic over the bandwidth plus one
#: latency, bounded as every other layer (it was charged a latency per tile of tiles it cannot hold: 3e18
#: cycles for a 2^20-channel 1x1 layer); the unmappable network was added with it, so versions 1 to 3
#: digest without it.)
DIGESTS = {"1": "5fdcb34942bd1170", "2": "c8cb3218d3809e16", "3": "d961daab7b194a60", "4": "74ff34acfef62dd8"}

ACCELERATORS = (
    Accelerator(rows=16, cols=16, dataflow="ws", mac_bits=8),
    Accelerator(rows=32, cols=8, dataflow="flex", gb_bytes=32 * 1024, dram_bw=4.0, zero_skip=True, mac_bits=16),
    Accelerator(rows=8, cols=8, dataflow="os_systolic", gb_bytes=16 * 1024, rf_bytes=8, mac_bits=8),
    Accelerator(rows=14, cols=12, dataflow="os_systolic", gb_bytes=108 * 1024, rf_bytes=24, mac_bits=8),  # 14 PEs
)


def outputs() -> str:
    """Totals and per-layer cycles and energy, 7 significant digits, as text."""
    lines = []
    for name, compression in (("squeezenet_v1_0", None), ("mobilenet_v1", CompressionPolicy.uniform(4, 8, 0.5)),
                              ("squeezenext_23", CompressionPolicy.uniform(8, 8, 0.4, "channel"))):
        workload = reference_network(name).workload(compression=compression)
        for accelerator in ACCELERATORS:
            report = evaluate(workload, accelerator)
            lines.append(" ".join(f"{k}={v:.6e}" for k, v in sorted(report.total.items())))
            lines += [f"{r['layer']} {r['dataflow']} {r['cycles']:.6e} {r['energy_pj']:.6e}" for r in report.layers]
    unmappable = Workload((conv("wide", 2**20, 16, 1, R=1), conv("fits", 16, 16, 8, R=3, padding=1)))
    for accelerator in ACCELERATORS:
        report = evaluate(unmappable, accelerator)
        lines += [f"{r['layer']} {r['cycles']:.6e} {r['energy_pj']:.6e} {r['buffer_overflow']}" for r in report.layers]
    return "\n".join(lines)


def test_the_numbers_of_this_cost_model_version_have_not_changed():
    digest = hashlib.sha256(outputs().encode()).hexdigest()[:16]
    assert DIGESTS.get(COST_MODEL_VERSION) == digest, (
        f"the cost model's numbers changed (digest {digest}) under version {COST_MODEL_VERSION}: bump "
        f"COST_MODEL_VERSION in cost_models/version.py and record the digest in DIGESTS")
