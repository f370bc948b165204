"""/api/audit: the audit log, newest first, with filters; and the same filters as a CSV download."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from backend.services.audit import MAX_PAGE, AuditQuery
from webapp.auth_schemas import AuditEventOut, AuditPageOut
from webapp.deps import AuthDep
from webapp.schemas import SQL_INT_MAX

router = APIRouter(tags=["audit"])
Text = Annotated[str | None, Query(max_length=128)]


def _utc(value: datetime | None) -> datetime | None:
    """A time without a zone is read as UTC (the log stores UTC)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def audit_query(
    actor: Text = None,
    action: Text = None,
    object_type: Text = None,
    object_id: Text = None,
    since: Annotated[datetime | None, Query(description="inclusive (ISO 8601; UTC when no zone)")] = None,
    until: Annotated[datetime | None, Query(description="exclusive (ISO 8601; UTC when no zone)")] = None,
    offset: Annotated[int, Query(ge=0, le=SQL_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditQuery:
    return AuditQuery(actor, action, object_type, object_id, _utc(since), _utc(until), offset, limit)


AuditQueryDep = Annotated[AuditQuery, Depends(audit_query)]


@router.get("/audit")
def audit_page(query: AuditQueryDep, auth: AuthDep) -> AuditPageOut:
    events, total = auth.audit.query(query)
    return AuditPageOut(data=[AuditEventOut.model_validate(e) for e in events], count=total)


@router.get("/audit.csv", response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def audit_csv(query: AuditQueryDep, auth: AuthDep) -> StreamingResponse:
    """Every matching event (offset and limit ignored) as CSV, streamed."""
    headers = {"Content-Disposition": 'attachment; filename="audit.csv"'}
    return StreamingResponse(auth.audit.iter_csv(query), media_type="text/csv", headers=headers)
