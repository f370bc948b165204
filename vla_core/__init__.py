"""The policy: config, model, tokenizer, training, inference, attention and uncertainty.

Imports are lazy so `import vla_core.constants` (used by the data pipeline) does not pull torch/transformers.
Public names: `make_policy`, `available_policies`, `get_config_class`, `register_policy` (vla_core.policies),
`PolicyOutput`, `load_policy` (vla_core.policies.base), `VLATinyConfig`, `VLATinyPolicy` (vla_core.policies.vla_tiny),
`Policy` (vla_core.inference), `overlay_heatmap` (vla_core.attention).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "make_policy": "vla_core.policies",
    "available_policies": "vla_core.policies",
    "get_config_class": "vla_core.policies",
    "register_policy": "vla_core.policies",
    "VLATinyConfig": "vla_core.policies.vla_tiny",
    "VLATinyPolicy": "vla_core.policies.vla_tiny",
    "PolicyOutput": "vla_core.policies.base",
    "load_policy": "vla_core.policies.base",
    "Policy": "vla_core.inference",
    "overlay_heatmap": "vla_core.attention",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vla_core' has no attribute {name!r}")
