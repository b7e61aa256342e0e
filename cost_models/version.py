"""The cost model's version, stored with every cost report a search keeps.

A stored report is the number a study was ranked on; when the model's numbers change,
old reports must say they came from an older model instead of silently changing.
Bump :data:`COST_MODEL_VERSION` whenever any cost of any layer changes;
``tests/test_cost_model_version.py`` holds a digest of the model's outputs on fixed
networks and accelerators and fails when the numbers change under the same version.
"""

COST_MODEL_VERSION = "4"
