"""/api/episodes: recorded episodes, newest first, with a JPEG thumbnail and one MP4 per camera."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from storage.episode_query import MAX_LIMIT, EpisodeQuery, SortKey, SuccessLabel
from storage.errors import NotFoundError
from storage.models import EpisodeSource, QualityFlagName
from storage.video import thumbnail_jpeg
from webapp.deps import StoreDep
from webapp.errors import EpisodeQueryRoute, error_responses
from webapp.schemas import SQL_INT_MAX, EpisodePublic, EpisodesPublic, IdPath, NamePath, to_public

router = APIRouter(prefix="/episodes", tags=["episodes"], route_class=EpisodeQueryRoute)

THUMBNAIL_WIDTH = 160


@router.get("")
def list_episodes(
    store: StoreDep,
    offset: int = Query(0, ge=0, le=SQL_INT_MAX),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    dataset: str | None = Query(None, max_length=64),
    task: str | None = Query(None, max_length=64),
    instruction: str | None = Query(None, max_length=200, description="case-insensitive substring"),
    source: EpisodeSource | None = None,
    operator: str | None = Query(None, max_length=64),
    success: Annotated[
        SuccessLabel | None, Query(description="the operator's verdict, else the automatic check")
    ] = None,
    created_from: Annotated[datetime | None, Query(description="inclusive (ISO 8601)")] = None,
    created_to: Annotated[datetime | None, Query(description="exclusive (ISO 8601)")] = None,
    quality_flag: Annotated[QualityFlagName | None, Query(description="episodes carrying this flag")] = None,
    trashed: Annotated[bool, Query(description="true: list the trash instead of the live episodes")] = False,
    sort: SortKey = SortKey.CREATED_AT,
    order: Literal["asc", "desc"] = "desc",
) -> EpisodesPublic:
    """Filtered, sorted and paged in SQL; `count` is the number that match before paging."""
    query = EpisodeQuery(
        dataset=dataset, task=task, instruction=instruction, source=source, operator=operator, success=success,
        created_from=created_from, created_to=created_to, quality_flag=quality_flag, trashed=trashed, sort=sort,
        descending=order == "desc", offset=offset,
        limit=limit,
    )  # fmt: skip
    infos, total = store.query_episodes(query)  # a filter it refuses (created_from after created_to): 422
    return EpisodesPublic(data=[to_public(i) for i in infos], count=total)


@router.get("/{episode_id}", responses=error_responses(404))
def get_episode(episode_id: IdPath, store: StoreDep, response: Response) -> EpisodePublic:
    """One episode; the ETag is its annotation version (send it back as If-Match with an edit)."""
    episode = to_public(store.get_episode(episode_id))
    response.headers["ETag"] = f'"{episode.version}"'
    return episode


def _video_path(store, episode_id: int, camera: str | None) -> Path:
    videos = store.episode_files(episode_id).videos  # NotFoundError (404) for an unknown episode
    camera = camera or next(iter(videos))
    if camera not in videos:
        raise NotFoundError(f"episode {episode_id} has no camera {camera!r}; it has {sorted(videos)}")
    return videos[camera]


@lru_cache(maxsize=256)
def _thumbnail(path: str) -> bytes:
    """The first frame, THUMBNAIL_WIDTH wide, as JPEG (episodes never change once saved, so cached by path)."""
    return thumbnail_jpeg(path, THUMBNAIL_WIDTH, quality=80)


@router.get(
    "/{episode_id}/thumbnail.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404)},
)
def thumbnail(
    episode_id: IdPath, store: StoreDep, camera: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    path = _video_path(store, episode_id, camera)
    return Response(_thumbnail(str(path)), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.get("/{episode_id}/video/{camera}.mp4", response_class=FileResponse, responses=error_responses(404))
def video(episode_id: IdPath, camera: NamePath, store: StoreDep) -> FileResponse:
    """The camera's H.264 MP4; Range requests are honoured (browsers seek with them)."""
    return FileResponse(_video_path(store, episode_id, camera), media_type="video/mp4")
