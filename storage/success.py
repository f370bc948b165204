"""The one "effective success" rule: the operator's verdict when given, else the task's automatic check.

It is written twice on purpose, side by side, because it runs in two places: in Python on a loaded episode
(``EpisodeInfo.effective_success``, training data, the API) and in SQL when the episode list is filtered by it
(``storage.episode_query``). tests/storage/test_success.py checks that both agree on every combination.
"""

from __future__ import annotations

import enum

from sqlalchemy import func
from sqlalchemy.sql import ColumnElement

__all__ = ["SuccessLabel", "effective_success", "effective_success_sql"]


class SuccessLabel(enum.StrEnum):
    """The effective label: the operator's verdict when given, else the task's automatic check."""

    SUCCESS = "success"
    FAILURE = "failure"
    UNLABELED = "unlabeled"


def effective_success(human: bool | None, auto: bool | None) -> bool | None:
    """The human verdict wins over the automatic predicate; None when neither was given."""
    return human if human is not None else auto


def effective_success_sql(human: ColumnElement, auto: ColumnElement) -> ColumnElement:
    """``effective_success`` as a SQL expression over two nullable boolean columns."""
    return func.coalesce(human, auto)
