"""/api/episodes/...: annotation edits (optimistic concurrency), history and undo, trim and split, bulk
operations on a selection, the player's signals, quality-flag recomputation, and the label vocabulary.

Thin: each route validates the request shape (pydantic) and calls backend.services.curation; store errors become
404 / 409 / 422 in webapp.errors.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException

from backend.services.audit import Action
from storage.episode_query import SortKey, SuccessLabel
from storage.models import EpisodeSource, FailureReason, QualityFlagName
from webapp.deps import AuditDep, CurationDep, CurrentUserDep
from webapp.errors import error_responses
from webapp.schemas import (
    SQL_INT_MAX,
    AnnotationPatchIn,
    BulkIn,
    EpisodeIdsOut,
    EpisodePublic,
    EventOut,
    IdPath,
    SignalsOut,
    SplitIn,
    TrimIn,
    UndoIn,
    VocabularyOut,
    to_public,
)

router = APIRouter(tags=["labeling"])
BULK_ACTIONS = {"trash": Action.EPISODE_TRASH, "purge": Action.EPISODE_PURGE}  # the rest: Action.EPISODES_BULK

# Every edit of one episode: unknown episode 404, moved since `version` 409.
EDIT_ERRORS = error_responses(
    404, 409, described={409: "the episode changed since `version` (body has `current_version`)"}
)


def _version(body_version: int | None, if_match: str | None) -> int:
    """The version the edit was made on: the body field, else the If-Match header (the ETag: "3" or W/"3")."""
    if body_version is not None:
        return body_version
    if if_match is None:
        raise HTTPException(428, "send the version the edit was made on (body field 'version' or the If-Match header)")
    tag = if_match.strip().strip('"').removeprefix("W/").strip('"')
    # isascii: "١" is a decimal digit to Python; the header is not echoed back (it is the client's own text).
    if not (tag.isascii() and tag.isdecimal() and 1 <= int(tag) <= SQL_INT_MAX):
        raise HTTPException(422, f"If-Match must be the episode version (a whole number from 1 to {SQL_INT_MAX})")
    return int(tag)


@router.patch("/episodes/{episode_id}/annotation", responses=EDIT_ERRORS | error_responses(428))
def annotate(
    episode_id: IdPath,
    body: AnnotationPatchIn,
    curation: CurationDep,
    user: CurrentUserDep,
    audit: AuditDep,
    if_match: Annotated[str | None, Header()] = None,
) -> EpisodePublic:
    """Change the instruction, paraphrases, segments, verdict, failure reason or notes (only the fields sent)."""
    version = _version(body.version, if_match)
    changes = body.changes()
    episode = curation.annotate(episode_id, changes, user=user.name, version=version)
    audit(Action.EPISODE_EDIT, "episode", episode_id, op="annotate", fields=sorted(changes), version=episode.version)
    return to_public(episode)


@router.get("/episodes/{episode_id}/history", responses=error_responses(404))
def history(episode_id: IdPath, curation: CurationDep) -> list[EventOut]:
    """Every change of the episode, newest first: who, when, and each field's value before and after."""
    return [EventOut.model_validate(e) for e in curation.history(episode_id)]


@router.post("/episodes/{episode_id}/undo", responses=EDIT_ERRORS)
def undo(
    episode_id: IdPath, body: UndoIn, curation: CurationDep, user: CurrentUserDep, audit: AuditDep
) -> EpisodePublic:
    """Revert the newest change not yet undone (recorded as a new change)."""
    episode = curation.undo(episode_id, user=user.name, version=body.version)
    audit(Action.EPISODE_EDIT, "episode", episode_id, op="undo", version=episode.version)
    return to_public(episode)


@router.post("/episodes/{episode_id}/trim", responses=EDIT_ERRORS)
def trim(
    episode_id: IdPath, body: TrimIn, curation: CurationDep, user: CurrentUserDep, audit: AuditDep
) -> EpisodeIdsOut:
    """Keep frames start..end as a new episode; the original goes to the trash."""
    new_ids = curation.trim(episode_id, body.start, body.end, user=user.name, version=body.version)
    audit(Action.EPISODE_EDIT, "episode", episode_id, op="trim", start=body.start, end=body.end, new=new_ids)
    return EpisodeIdsOut(episode_ids=new_ids)


@router.post("/episodes/{episode_id}/split", responses=EDIT_ERRORS)
def split(
    episode_id: IdPath, body: SplitIn, curation: CurationDep, user: CurrentUserDep, audit: AuditDep
) -> EpisodeIdsOut:
    """Split before frame `at` into two new episodes; the original goes to the trash."""
    new_ids = curation.split(episode_id, body.at, user=user.name, version=body.version)
    audit(Action.EPISODE_EDIT, "episode", episode_id, op="split", at=body.at, new=new_ids)
    return EpisodeIdsOut(episode_ids=new_ids)


@router.post("/episodes/bulk", responses=EDIT_ERRORS)
def bulk(body: BulkIn, curation: CurationDep, user: CurrentUserDep, audit: AuditDep) -> EpisodeIdsOut:
    """One operation on a selection, all or nothing: annotate (set instruction / label / ...), move to a
    dataset, trash, restore, or purge (only from the trash, never an episode a snapshot holds)."""
    changes = body.changes.changes() if body.changes is not None else None
    changed = curation.bulk(body.op, body.episode_ids, user=user.name, changes=changes, dataset=body.dataset)
    action = BULK_ACTIONS.get(body.op, Action.EPISODES_BULK)
    audit(action, "episodes", None, op=body.op, episode_ids=changed, fields=sorted(changes or {}), dataset=body.dataset)
    return EpisodeIdsOut(episode_ids=changed)


@router.get("/episodes/{episode_id}/signals", responses=error_responses(404))
def signals(episode_id: IdPath, curation: CurationDep) -> SignalsOut:
    """State and action per frame, for the player's charts."""
    return SignalsOut(**curation.signals(episode_id))


@router.post("/episodes/{episode_id}/quality", responses=error_responses(404))
def recompute_quality(episode_id: IdPath, curation: CurationDep, audit: AuditDep) -> EpisodePublic:
    """Recompute the episode's quality flags with the current rules."""
    curation.store.recompute_quality([episode_id])
    audit(Action.EPISODE_EDIT, "episode", episode_id, op="quality")
    return to_public(curation.store.get_episode(episode_id))


@router.get("/labeling/vocabulary")
def vocabulary() -> VocabularyOut:
    """The closed lists the labeling UI offers (static/label has no copies): failure reasons (in hotkey order),
    quality flags, sources, effective labels and the episode list's sort keys."""
    return VocabularyOut(
        failure_reasons=list(FailureReason),
        quality_flags=list(QualityFlagName),
        sources=[s.value for s in EpisodeSource],
        success_labels=list(SuccessLabel),
        sort_keys=list(SortKey),
    )
