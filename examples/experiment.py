"""An experiment file for `codesign run examples/experiment.py`: it defines `experiment`.

A joint search over networks, compression and accelerators on the built-in digits data
(8x8, 1 channel, 10 classes; the network space takes that shape from the dataset). Every
candidate is trained for one epoch (the proxy); the front can be retrained at full
fidelity afterwards with `codesign finalize runs/example`.

Copy it and change what you search: a CIFAR-10 folder or an .npz of your own as
`dataset`, wider spaces, more trials. `codesign run` takes --trials N to override the
budget, --address HOST:PORT for a Ray cluster, and --storage / --artifacts to keep the study
and the artifacts elsewhere (a database server, an object store).
"""

import codesign
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.compression import CompressionSpace
from search_spaces.network_space import NetworkSpace

experiment = codesign.Experiment(
    name="example",                      # the run folder is runs/example
    dataset="digits",                    # or "cifar-10-batches-py/", "my_data.npz"
    network_space=NetworkSpace(blocks=("dwsep", "fire", "squeezenext"), stages=(2,), depths=(1, 2),
                               widths=(16, 32), kernels=(3,), stem_kernels=(3,), stem_widths=(16,)),
    compression_space=CompressionSpace(w_bits=(4, 8), a_bits=(8,), prune_ratios=(0.0, 0.5)),
    accelerator_space=AcceleratorSpace(rows=(8, 16, 32), cols=(8, 16, 32), dataflows=("ws", "os", "flex")),
    proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=1)),
    objectives=("accuracy", "latency", "energy"),
    constraints=[codesign.Constraint("area", max=2.0)],
    trials=30,
)
