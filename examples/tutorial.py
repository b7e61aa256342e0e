"""The tutorial's experiment (docs/TUTORIAL.md): a search on an image folder of your own.

`examples/shapes/` holds 4 classes of 16x16 RGB images, one subfolder per class; point
`dataset` at your own folder instead. Every candidate is trained for 8 epochs (168 images).
"""

import codesign
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.compression import CompressionSpace
from search_spaces.network_space import NetworkSpace

experiment = codesign.Experiment(
    name="tutorial",                     # the run folder is runs/tutorial
    dataset="examples/shapes",           # one subfolder of images per class
    network_space=NetworkSpace(blocks=("dwsep", "fire"), stages=(2,), depths=(1,), widths=(16, 32), kernels=(3,),
                               stem_kernels=(3,), stem_widths=(16,)),
    compression_space=CompressionSpace(w_bits=(4, 8), a_bits=(8,), prune_ratios=(0.0, 0.5)),
    accelerator_space=AcceleratorSpace(rows=(8, 16, 32), cols=(8, 16, 32), dataflows=("ws", "os", "flex")),
    proxy=codesign.TrainedProxy(codesign.TrainConfig(epochs=8)),
    constraints=[codesign.Constraint("area", max=1.0)],
    trials=6,
)
