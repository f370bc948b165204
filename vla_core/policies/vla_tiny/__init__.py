"""The default policy: `vla_tiny` (configuration, modeling, processor)."""

from vla_core.policies.vla_tiny.configuration import VLATinyConfig
from vla_core.policies.vla_tiny.modeling import (
    PolicyOutput,
    VLATinyPolicy,
    load_training_metadata,
    save_training_metadata,
)
from vla_core.policies.vla_tiny.processor import CharTokenizer, VLATinyProcessor

__all__ = [
    "CharTokenizer",
    "PolicyOutput",
    "VLATinyConfig",
    "VLATinyPolicy",
    "VLATinyProcessor",
    "load_training_metadata",
    "save_training_metadata",
]
