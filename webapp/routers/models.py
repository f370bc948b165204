"""/api/models: the model registry (list, details with lineage and file check, compare, stages, notes, training
curves, download and import as .tar.gz). Reading is training.read, changing training.write (webapp.permissions);
every change is audited by backend.services.models."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from storage.models import ModelStage
from webapp.deps import AddressDep, CurrentUserDep, ModelsDep
from webapp.errors import error_responses
from webapp.model_schemas import (
    ModelCompareOut,
    ModelCurvesOut,
    ModelDetailOut,
    ModelNotesIn,
    ModelOut,
    ModelsOut,
)
from webapp.schemas import IdPath
from webapp.security import upload_types

router = APIRouter(prefix="/models", tags=["models"])
ModelName = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
INTEGRITY = {409: "the model's files are missing or altered (the answer lists them): refused"}
GZIP_BODY = {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}


@router.get("")
def list_models(
    models: ModelsDep,
    name: Annotated[str | None, Query(max_length=64)] = None,
    stage: ModelStage | None = None,
    policy_type: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ModelsOut:
    """Registered models, newest first, a page at a time (`count`: how many match the filters in all)."""
    filters = {"name": name, "stage": stage, "policy_type": policy_type}
    found = [ModelOut.model_validate(m) for m in models.list(**filters, limit=limit, offset=offset)]
    return ModelsOut(data=found, count=models.count(**filters))


@router.get("/{model_id}", responses=error_responses(404))
def get_model(model_id: IdPath, models: ModelsDep) -> ModelDetailOut:
    """A model with its lineage (parent chain, snapshot and its episodes, job) and a check of its files."""
    info = models.get(model_id)
    return ModelDetailOut.model_validate(
        ModelOut.model_validate(info).model_dump()
        | {"lineage": models.lineage(model_id), "problems": models.verify(model_id)}
    )


@router.get("/{model_id}/compare/{other_id}", responses=error_responses(404))
def compare_models(model_id: IdPath, other_id: IdPath, models: ModelsDep) -> ModelCompareOut:
    """Two models side by side: config keys that differ, every metric, and whether their closed-loop success was
    measured on the same seeds."""
    diff = models.compare(model_id, other_id)
    a, b = (ModelOut.model_validate(models.get(i)) for i in (model_id, other_id))
    return ModelCompareOut.model_validate(diff | {"a": a, "b": b})


@router.get("/{model_id}/curves", responses=error_responses(404, 409, described=INTEGRITY))
def model_curves(model_id: IdPath, models: ModelsDep) -> ModelCurvesOut:
    """The training curves (metrics.jsonl) copied with the model; empty when it came without them."""
    return ModelCurvesOut(records=models.curves(model_id))


@router.post("/{model_id}/promote", responses=error_responses(404, 409, described=INTEGRITY))
def promote_model(model_id: IdPath, models: ModelsDep, user: CurrentUserDep, address: AddressDep) -> ModelOut:
    """Make the model its name's production model (the default for rollouts); the previous one becomes a
    candidate. A model whose files do not check out is refused."""
    return ModelOut.model_validate(models.promote(model_id, actor=user.name, address=address))


@router.post("/{model_id}/archive", responses=error_responses(404, 409, described={409: "it is the production model"}))
def archive_model(model_id: IdPath, models: ModelsDep, user: CurrentUserDep, address: AddressDep) -> ModelOut:
    """Retire the model (kept and listed; promote brings it back)."""
    return ModelOut.model_validate(models.archive(model_id, actor=user.name, address=address))


@router.patch("/{model_id}", responses=error_responses(404))
def set_model_notes(
    model_id: IdPath, body: ModelNotesIn, models: ModelsDep, user: CurrentUserDep, address: AddressDep
) -> ModelOut:
    return ModelOut.model_validate(models.set_notes(model_id, body.notes, actor=user.name, address=address))


@router.get(
    "/{model_id}/download",
    response_class=FileResponse,
    responses={200: {"content": GZIP_BODY, "description": "<name>-v<version>.tar.gz"}}
    | error_responses(404, 409, described=INTEGRITY),
)
def download_model(model_id: IdPath, models: ModelsDep) -> FileResponse:
    """The model as a .tar.gz (its files and registry.json with their checksums), for POST /api/models/import on
    this or another dashboard. A model whose files do not check out is refused."""
    info = models.get(model_id)
    work = Path(tempfile.mkdtemp(prefix="download-", dir=models.staging_dir))
    try:
        archive = models.export_archive(model_id, work / f"{info.name}-v{info.version}.tar.gz")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    cleanup = BackgroundTask(shutil.rmtree, work, ignore_errors=True)  # once the file has been sent
    return FileResponse(archive, media_type="application/gzip", filename=archive.name, background=cleanup)


@router.post(
    "/import",
    status_code=201,
    openapi_extra={"requestBody": {"required": True, "content": GZIP_BODY}},
    responses=error_responses(415, described={415: "send the archive as Content-Type: application/gzip"}),
)
async def import_model(
    request: Request, name: ModelName, models: ModelsDep, user: CurrentUserDep, address: AddressDep
) -> ModelOut:
    """Register an uploaded .tar.gz of a model as the next version of `name`: an archive from GET
    /api/models/{id}/download (its metrics and notes come with it, its checksums are checked) or a save_pretrained
    folder packed by hand. The body is the archive itself (Content-Type: application/gzip), streamed to disk."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in upload_types(request.scope):
        raise HTTPException(415, "send the model's .tar.gz as the body, with Content-Type: application/gzip")
    fd, upload = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=models.staging_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():  # the body limit (webapp.security.UploadBodyLimit) counts these
                f.write(chunk)
        info = await run_in_threadpool(models.import_archive, upload, name=name, created_by=user.name, address=address)
    finally:
        os.unlink(upload)
    return ModelOut.model_validate(info)
