"""The default policy: `vla_tiny` (configuration, modeling, processor)."""

from vla_core.policies.vla_tiny.configuration import VLATinyConfig
from vla_core.policies.vla_tiny.modeling import VLATinyPolicy
from vla_core.policies.vla_tiny.processor import CharTokenizer, VLATinyProcessor

__all__ = [
    "CharTokenizer",
    "VLATinyConfig",
    "VLATinyPolicy",
    "VLATinyProcessor",
]
