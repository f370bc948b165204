"""Policies by registered name (lerobot `policies/factory.py` style).

A policy package registers its PreTrainedModel subclass with `@register_policy("<name>")`; the class carries its
config class as `config_class`. `make_policy(cfg)` builds the policy whose config class matches `cfg`;
`get_config_class(name)` gives the config class to build a config from overrides. `load_policy(dir)` (defined in
`vla_core.policies.base`, with the output type and the training-metadata I/O) reads config.json's `model_type` and
loads the right class.
"""

from __future__ import annotations

from typing import Any

from vla_core.policies.base import load_policy

_REGISTRY: dict[str, type] = {}
_BUILTIN = ("vla_tiny",)  # imported on first use so the registry is complete without import-order tricks


def register_policy(name: str):
    """Class decorator: register a policy class (a PreTrainedModel with `config_class`) under `name`."""

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"policy {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.policy_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_builtin() -> None:
    import importlib

    for name in _BUILTIN:
        if name not in _REGISTRY:
            importlib.import_module(f"vla_core.policies.{name}")


def available_policies() -> list[str]:
    """Registered policy names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_policy_class(name: str) -> type:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown policy {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def get_config_class(name: str) -> type:
    """The PretrainedConfig subclass of the policy registered as `name` (KeyError if unknown)."""
    return get_policy_class(name).config_class


def make_policy(cfg: Any = None, **overrides: Any):
    """A freshly initialised policy for `cfg` (a registered config instance, or a policy name; None = vla_tiny).

    `overrides` are applied to the config when `cfg` is a name or None, e.g. make_policy("vla_tiny", d_model=64).
    """
    if cfg is None or isinstance(cfg, str):
        cfg = get_config_class(cfg or "vla_tiny")(**overrides)
    elif overrides:
        raise TypeError("overrides are only accepted with a policy name")
    _load_builtin()
    for cls in _REGISTRY.values():
        if type(cfg) is cls.config_class:
            return cls(cfg)
    raise KeyError(f"no registered policy uses config class {type(cfg).__qualname__}")


__all__ = [
    "available_policies",
    "get_config_class",
    "get_policy_class",
    "load_policy",
    "make_policy",
    "register_policy",
]
