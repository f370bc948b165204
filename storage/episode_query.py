"""Filtered, sorted, paged episode listing, done in SQL so the browser stays fast with tens of thousands of rows.

`EpisodeQuery` is the typed request (every filter optional); `build_select` turns it into one SELECT for the page
and one COUNT for the total, both using the indexes on episodes(dataset_id, task, operator, created_at).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, func, select
from sqlalchemy.sql import ColumnElement

from storage.models import Dataset, Episode, EpisodeQualityFlag, EpisodeSource, QualityFlagName
from storage.success import SuccessLabel, effective_success_sql

__all__ = ["EpisodeQuery", "SortKey", "SuccessLabel", "build_count", "build_select", "filter_conditions"]

MAX_LIMIT = 500


class SortKey(enum.StrEnum):
    CREATED_AT = "created_at"
    ID = "id"
    LENGTH = "length"
    TASK = "task"
    OPERATOR = "operator"


@dataclass(frozen=True)
class EpisodeQuery:
    dataset: str | None = None
    task: str | None = None
    instruction: str | None = None  # case-insensitive substring
    source: EpisodeSource | None = None
    operator: str | None = None
    success: SuccessLabel | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    quality_flag: QualityFlagName | None = None  # episodes carrying this flag
    trashed: bool = False  # False: live episodes only; True: the trash only
    sort: SortKey = SortKey.CREATED_AT
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def validate(self) -> None:
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, got {self.offset}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be in [1, {MAX_LIMIT}], got {self.limit}")
        if self.created_from and self.created_to and self.created_from >= self.created_to:
            raise ValueError("created_from must be before created_to")


def _effective_success() -> ColumnElement:
    return effective_success_sql(Episode.human_success, Episode.auto_success)


def filter_conditions(q: EpisodeQuery) -> list[ColumnElement]:
    """WHERE terms of the query's filters (the caller joins Dataset); paging and sort are left out."""
    c: list[ColumnElement] = [Episode.deleted_at.is_not(None) if q.trashed else Episode.deleted_at.is_(None)]
    if q.dataset is not None:
        c.append(Dataset.name == q.dataset)
    if q.task is not None:
        c.append(Episode.task == q.task)
    if q.instruction:
        # ILIKE on PostgreSQL, LIKE with lower() on SQLite: escape the wildcards the user typed.
        pattern = "%" + q.instruction.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        c.append(Episode.instruction.ilike(pattern, escape="\\"))
    if q.source is not None:
        c.append(Episode.source == q.source)
    if q.operator is not None:
        c.append(Episode.operator == q.operator)
    if q.success is SuccessLabel.SUCCESS:
        c.append(_effective_success().is_(True))
    elif q.success is SuccessLabel.FAILURE:
        c.append(_effective_success().is_(False))
    elif q.success is SuccessLabel.UNLABELED:
        c.append(_effective_success().is_(None))
    if q.created_from is not None:
        c.append(Episode.created_at >= q.created_from)
    if q.created_to is not None:
        c.append(Episode.created_at < q.created_to)
    if q.quality_flag is not None:  # a semi-join on the (flag) index
        flagged = select(EpisodeQualityFlag.episode_id).where(EpisodeQualityFlag.flag == q.quality_flag)
        c.append(Episode.id.in_(flagged))
    return c


def build_select(q: EpisodeQuery) -> Select:
    """SELECT (Episode, Dataset.name) for one page; ties broken by id so pages never overlap."""
    column = getattr(Episode, q.sort.value)
    order = (column.desc(), Episode.id.desc()) if q.descending else (column.asc(), Episode.id.asc())
    query = select(Episode, Dataset.name).join(Dataset, Episode.dataset_id == Dataset.id)
    return query.where(and_(*filter_conditions(q))).order_by(*order).offset(q.offset).limit(q.limit)


def build_count(q: EpisodeQuery) -> Select:
    query = select(func.count(Episode.id)).select_from(Episode).join(Dataset, Episode.dataset_id == Dataset.id)
    return query.where(and_(*filter_conditions(q)))
