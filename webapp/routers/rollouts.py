"""/api/rollouts: every policy rollout (live and evaluation) with its outcome, newest first, filtered; and the same
filters as CSV and Parquet downloads. Read-only: rows are written by the robot session and evaluation jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from backend.services.rollout_log import MAX_PAGE, RolloutInfo, RolloutLog, RolloutQuery
from webapp.errors import error_responses
from webapp.routers.audit import _utc
from webapp.schemas import SQL_INT_MAX

router = APIRouter(tags=["rollouts"])
Text = Annotated[str | None, Query(max_length=128)]
Id = Annotated[int | None, Query(ge=1, le=SQL_INT_MAX)]


def get_rollouts(request: Request) -> RolloutLog:
    return request.app.state.rollouts


RolloutsDep = Annotated[RolloutLog, Depends(get_rollouts)]


def rollout_query(
    model_id: Id = None,
    model_name: Text = None,
    task: Text = None,
    colour: Text = None,
    kind: Literal["live", "evaluation"] | None = None,
    operator: Text = None,
    outcome: Literal["success", "failure", "aborted"] | None = None,
    suite: Text = None,
    job_id: Id = None,
    since: Annotated[datetime | None, Query(description="started at or after (ISO 8601; UTC when no zone)")] = None,
    until: Annotated[datetime | None, Query(description="started before (ISO 8601; UTC when no zone)")] = None,
) -> RolloutQuery:
    return RolloutQuery(model_id=model_id, model_name=model_name, task=task, colour=colour, kind=kind,
                        operator=operator, outcome=outcome, suite=suite, job_id=job_id, since=_utc(since),
                        until=_utc(until))  # fmt: skip


RolloutQueryDep = Annotated[RolloutQuery, Depends(rollout_query)]


class RolloutPageOut(BaseModel):
    data: list[RolloutInfo]
    count: int


@router.get("/rollouts")
def rollouts_page(
    query: RolloutQueryDep,
    log: RolloutsDep,
    offset: Annotated[int, Query(ge=0, le=SQL_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> RolloutPageOut:
    return RolloutPageOut(data=log.list(query, limit=limit, offset=offset), count=log.count(query))


@router.get("/rollouts.csv", response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def rollouts_csv(query: RolloutQueryDep, log: RolloutsDep) -> StreamingResponse:
    """Every matching rollout, oldest first, as CSV (streamed)."""
    headers = {"Content-Disposition": 'attachment; filename="rollouts.csv"'}
    return StreamingResponse(log.csv_lines(query), media_type="text/csv", headers=headers)


@router.get("/rollouts.parquet", response_class=Response,
            responses={200: {"content": {"application/vnd.apache.parquet": {}}}})  # fmt: skip
def rollouts_parquet(query: RolloutQueryDep, log: RolloutsDep) -> Response:
    """Every matching rollout, oldest first, as one Parquet file (typed columns: timestamps, booleans, ints)."""
    headers = {"Content-Disposition": 'attachment; filename="rollouts.parquet"'}
    return Response(log.parquet_bytes(query), media_type="application/vnd.apache.parquet", headers=headers)


@router.get("/rollouts/{rollout_id}", responses=error_responses(404))
def rollout(rollout_id: Annotated[int, Path(ge=1, le=SQL_INT_MAX)], log: RolloutsDep) -> RolloutInfo:
    return log.get(rollout_id)
