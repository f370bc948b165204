"""/api/metrics: the managers' charts (backend.services.metrics), every one with the same filters, as JSON and as
CSV. Read-only (metrics.read: managers, engineers, admins)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from backend.services.metrics import BUCKETS, CHARTS, MetricsFilter, MetricsService
from webapp.errors import MetricsQueryRoute
from webapp.routers.audit import _utc

router = APIRouter(prefix="/metrics", tags=["metrics"], route_class=MetricsQueryRoute)
Text = Annotated[str | None, Query(max_length=128)]
Chart = StrEnum("Chart", {name: name for name in CHARTS})
BucketName = StrEnum("BucketName", {name: name for name in BUCKETS})


def get_metrics(request: Request) -> MetricsService:
    return request.app.state.metrics


MetricsDep = Annotated[MetricsService, Depends(get_metrics)]


def metrics_filter(
    since: Annotated[datetime | None, Query(description="from (ISO 8601; UTC when no zone)")] = None,
    until: Annotated[datetime | None, Query(description="before (ISO 8601; UTC when no zone)")] = None,
    task: Text = None,
    model_name: Text = None,
    operator: Text = None,
    source: Annotated[
        str | None,
        Query(
            max_length=32,
            description="a rollout kind (live, evaluation) or an "
            "episode source (teleop, scripted, intervention, policy)",
        ),
    ] = None,
) -> MetricsFilter:
    return MetricsFilter(since=_utc(since), until=_utc(until), task=task, model_name=model_name, operator=operator,
                         source=source)  # fmt: skip


FilterDep = Annotated[MetricsFilter, Depends(metrics_filter)]
BucketQuery = Annotated[BucketName, Query(description="the charts' period: day, week (from Monday) or month")]


class ChartOut(BaseModel):
    chart: str
    columns: list[str]
    rows: list[dict[str, Any]]


class AllChartsOut(BaseModel):
    bucket: str
    charts: dict[str, ChartOut]


@router.get("")
def all_charts(f: FilterDep, metrics: MetricsDep, bucket: BucketQuery = BucketName.week) -> AllChartsOut:
    """Every chart of the Metrics tab for one set of filters, in one answer (what the tab draws)."""
    charts = {name: ChartOut(chart=name, columns=list(cols), rows=metrics.chart(name, f, bucket.value))
              for name, cols in CHARTS.items()}  # fmt: skip
    return AllChartsOut(bucket=bucket.value, charts=charts)


@router.get("/{chart}.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def chart_csv(chart: Annotated[Chart, Path()], f: FilterDep, metrics: MetricsDep,
              bucket: BucketQuery = BucketName.week) -> Response:  # fmt: skip
    """One chart's rows as CSV, its columns in CHARTS order (what the chart's download button saves)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CHARTS[chart.value])
    writer.writeheader()
    writer.writerows(metrics.chart(chart.value, f, bucket.value))
    headers = {"Content-Disposition": f'attachment; filename="metrics-{chart.value}.csv"'}
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


@router.get("/{chart}")
def one_chart(chart: Annotated[Chart, Path()], f: FilterDep, metrics: MetricsDep,
              bucket: BucketQuery = BucketName.week) -> ChartOut:  # fmt: skip
    return ChartOut(
        chart=chart.value, columns=list(CHARTS[chart.value]), rows=metrics.chart(chart.value, f, bucket.value)
    )
