"""What a search leaves behind, read back: designs, their retraining, plots and hand-overs.

- :func:`load` / :class:`Results` / :class:`Design` (``designs.py``): a study as its
  Pareto front of ready-to-use model-accelerator pairs (metrics, specs, trained model,
  ``predict``, the stored cost report).
- :func:`finalize` / :class:`Final` (``finalize.py``): the front retrained at full fidelity
  and measured on the test split, recorded on the study.
- ``plots.py``: the Pareto front, the hypervolume history, per-layer costs, hardware fronts.
- ``export.py`` and ``onnx_export.py``: a design's files for a hand-over (specs, SCALE-Sim
  files, cost report, the trained model as ONNX).

This room reads the study through :mod:`codesign.outcome` and :mod:`codesign.storage` and
retrains through :mod:`codesign.accuracy`; nothing in the search loop depends on it but
the loop's return value and the CLI.
"""

from codesign.results.designs import Design, Results, load, no_feasible_design
from codesign.results.finalize import Final, finalize

__all__ = ["Design", "Final", "Results", "finalize", "load", "no_feasible_design"]
