"""Annotation edits, their history and undo, and the curation moves that only touch rows (trash, restore,
move to another dataset, merge datasets).

Every change goes through `_apply`, which (in one transaction) writes the new values, bumps ``episodes.version``
and appends an ``episode_events`` row with who, when and each changed field as ``[before, after]``. Undo replays
the newest change not yet undone backwards, as a new event, so the history itself is never rewritten.

Concurrency is optimistic: an edit names the version it was made on (``expected_version``); if another user
changed the episode since, `ConflictError` is raised with the current version and nothing is written. The
version check and the write happen under one ``UPDATE .. WHERE version = :expected``, so two processes racing
on the same episode cannot both win. Bulk operations apply to the latest version (no check) and are recorded
per episode, so they can be seen and undone like any edit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from storage.episode_meta import validate_name
from storage.episode_store import dataset_id
from storage.errors import AnnotationError, ConflictError, NotFoundError
from storage.models import Dataset, Episode, EpisodeEvent, FailureReason, SnapshotEpisode, utcnow

__all__ = [
    "ANNOTATION_FIELDS",
    "AnnotationService",
    "EventInfo",
    "validate_changes",
]

# Fields an annotation edit may set (PATCH body keys).
ANNOTATION_FIELDS = ("instruction", "paraphrases", "segments", "human_success", "failure_reason", "notes")
MAX_TEXT = 500  # instruction, paraphrase and segment text
MAX_NOTES = 5000
MAX_PARAPHRASES = 50
MAX_SEGMENTS = 200
USER_MAX_LEN = 128


@dataclass(frozen=True)
class EventInfo:
    id: int
    episode_id: int
    version: int
    user: str
    at: datetime
    action: str
    changes: dict[str, list[Any]]  # {field: [before, after]}
    undone_by: int | None


def _text(value: Any, what: str, max_len: int = MAX_TEXT, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise AnnotationError(f"{what} must be text, got {type(value).__name__}")
    text = " ".join(value.split())  # collapse runs of whitespace and newlines: instructions are one line
    if not text and not allow_empty:
        raise AnnotationError(f"{what} must not be empty")
    if len(text) > max_len:
        raise AnnotationError(f"{what} is {len(text)} characters long; at most {max_len} are allowed")
    return text


def _segments(value: Any, length: int) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise AnnotationError("segments must be a list of {start, end, text}")
    if len(value) > MAX_SEGMENTS:
        raise AnnotationError(f"at most {MAX_SEGMENTS} segments per episode, got {len(value)}")
    out = []
    for i, seg in enumerate(value, 1):
        if not isinstance(seg, Mapping) or set(seg) != {"start", "end", "text"}:
            raise AnnotationError(f"segment {i} must have exactly the keys start, end, text")
        start, end = seg["start"], seg["end"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise AnnotationError(f"segment {i}: start and end must be whole frame numbers")
        if not 0 <= start <= end < length:
            raise AnnotationError(
                f"segment {i} (frames {start}-{end}) is outside the episode: frames run from 0 to {length - 1}, "
                "and a segment's start must not be after its end"
            )
        out.append({"start": start, "end": end, "text": _text(seg["text"], f"segment {i} text")})
    out.sort(key=lambda s: (s["start"], s["end"]))
    for a, b in zip(out, out[1:], strict=False):
        if b["start"] <= a["end"]:
            raise AnnotationError(
                f"segments overlap: {a['text']!r} (frames {a['start']}-{a['end']}) and {b['text']!r} "
                f"(frames {b['start']}-{b['end']}); a frame belongs to at most one sub-task"
            )
    return out


def validate_changes(changes: Mapping[str, Any], *, length: int, human_success: bool | None) -> dict[str, Any]:
    """Clean and check an annotation edit for an episode of `length` frames whose current operator verdict is
    `human_success`. Returns the normalised values; AnnotationError (a ValueError) says what is wrong."""
    unknown = set(changes) - set(ANNOTATION_FIELDS)
    if unknown:
        raise AnnotationError(f"unknown annotation fields {sorted(unknown)}; editable: {list(ANNOTATION_FIELDS)}")
    out: dict[str, Any] = {}
    if "instruction" in changes:
        out["instruction"] = _text(changes["instruction"], "instruction")
    if "paraphrases" in changes:
        value = changes["paraphrases"]
        if not isinstance(value, list) or len(value) > MAX_PARAPHRASES:
            raise AnnotationError(f"paraphrases must be a list of at most {MAX_PARAPHRASES} texts")
        texts = [_text(p, f"paraphrase {i}") for i, p in enumerate(value, 1)]
        if len(set(texts)) != len(texts):
            raise AnnotationError("paraphrases contain the same text twice")
        out["paraphrases"] = texts
    if "segments" in changes:
        out["segments"] = _segments(changes["segments"], length)
    if "human_success" in changes:
        if changes["human_success"] is not None and not isinstance(changes["human_success"], bool):
            raise AnnotationError("human_success must be true, false or null")
        out["human_success"] = changes["human_success"]
    if "notes" in changes:
        out["notes"] = _text(changes["notes"], "notes", MAX_NOTES, allow_empty=True) if changes["notes"] else ""
    verdict = out.get("human_success", human_success)
    if "failure_reason" in changes and changes["failure_reason"] is not None:
        try:
            reason = FailureReason(changes["failure_reason"])
        except ValueError:
            raise AnnotationError(
                f"unknown failure reason {changes['failure_reason']!r}; one of {[r.value for r in FailureReason]}"
            ) from None
        if verdict is not False:
            raise AnnotationError("a failure reason can only be given for a failed episode (human_success false)")
        out["failure_reason"] = reason.value
    elif "failure_reason" in changes or verdict is not False:
        out["failure_reason"] = None  # a success (or no verdict) has no failure reason
    return out


def _user(user: str) -> str:
    return _text(user, "user name", USER_MAX_LEN)


def _event_info(e: EpisodeEvent) -> EventInfo:
    return EventInfo(e.id, e.episode_id, e.version, e.user, e.at, e.action, dict(e.changes), e.undone_by)


class AnnotationService:
    """Edits, history, undo, trash and moves of episodes in one database."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sf = session_factory

    # -- the one write path --------------------------------------------------------------------------------------
    @staticmethod
    def _episode(session: Session, episode_id: int) -> Episode:
        ep = session.get(Episode, episode_id)
        if ep is None:
            raise NotFoundError(f"no episode with id {episode_id}")
        return ep

    @staticmethod
    def _current(session: Session, ep: Episode, field: str) -> Any:
        if field == "dataset":
            return session.scalar(select(Dataset.name).where(Dataset.id == ep.dataset_id))
        value = getattr(ep, field)
        if field == "deleted_at":
            return None if value is None else value.isoformat()
        if field == "failure_reason":
            return None if value is None else FailureReason(value).value
        if isinstance(value, list):
            return [dict(v) if isinstance(v, Mapping) else v for v in value]
        return value

    @staticmethod
    def _column_values(session: Session, values: Mapping[str, Any]) -> dict[str, Any]:
        """Event values (JSON) -> column values."""
        cols: dict[str, Any] = {}
        for field, value in values.items():
            if field == "dataset":
                # Get-or-create: undoing a merge brings back the dataset the merge deleted.
                cols["dataset_id"] = dataset_id(session, value, create=True)
            elif field == "deleted_at":
                cols["deleted_at"] = None if value is None else datetime.fromisoformat(value)
            else:
                cols[field] = value
        return cols

    def _apply(
        self,
        session: Session,
        ep: Episode,
        values: Mapping[str, Any],
        *,
        user: str,
        action: str,
        expected_version: int | None,
    ) -> EventInfo | None:
        """Write `values` ({field: JSON value}) to `ep`, bump its version, log the event. Fields whose value does
        not change are left out; None (and no version bump) when nothing changes."""
        if expected_version is not None and ep.version != expected_version:
            raise self._conflict(session, ep, expected_version)
        changes = {}
        for field, after in values.items():
            before = self._current(session, ep, field)
            if before != after:
                changes[field] = [before, after]
        if not changes:
            return None
        new_version = ep.version + 1
        done = session.execute(
            update(Episode)
            .where(Episode.id == ep.id, Episode.version == ep.version)
            .values(version=new_version, **self._column_values(session, {f: a for f, (_, a) in changes.items()}))
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:  # another process committed a change between our read and this write
            raise ConflictError(
                f"episode {ep.id} was changed by someone else while this edit was being saved; reload it and redo "
                "the edit",
            )
        event = EpisodeEvent(
            episode_id=ep.id, version=new_version, user=user, at=utcnow(), action=action, changes=changes
        )
        session.add(event)
        session.flush()
        session.expire(ep)
        return _event_info(event)

    def _conflict(self, session: Session, ep: Episode, expected_version: int) -> ConflictError:
        later = session.scalars(
            select(EpisodeEvent)
            .where(EpisodeEvent.episode_id == ep.id, EpisodeEvent.version > expected_version)
            .order_by(EpisodeEvent.id)
        ).all()
        who = ", ".join(f"{e.user} ({e.action} {', '.join(e.changes)} at {e.at:%H:%M:%S})" for e in later[-3:])
        return ConflictError(
            f"episode {ep.id} is at version {ep.version}, but this edit was made on version {expected_version}; "
            f"changed since by {who or 'someone'}. Reload the episode, then redo the edit",
            current_version=ep.version,
        )

    # -- single-episode annotation ---------------------------------------------------------------------------------
    def edit(
        self, episode_id: int, changes: Mapping[str, Any], *, user: str, expected_version: int, action: str = "edit"
    ) -> EventInfo | None:
        """Apply an annotation edit made on `expected_version`; None if it changed nothing."""
        user = _user(user)
        with self._sf.begin() as session:
            ep = self._episode(session, episode_id)
            if ep.deleted_at is not None:
                raise ConflictError(f"episode {episode_id} is in the trash; restore it before editing")
            if ep.version != expected_version:
                raise self._conflict(session, ep, expected_version)
            values = validate_changes(changes, length=ep.length, human_success=ep.human_success)
            return self._apply(session, ep, values, user=user, action=action, expected_version=expected_version)

    def history(self, episode_id: int) -> list[EventInfo]:
        """The episode's changes, newest first."""
        with self._sf() as session:
            self._episode(session, episode_id)
            rows = session.scalars(
                select(EpisodeEvent).where(EpisodeEvent.episode_id == episode_id).order_by(EpisodeEvent.id.desc())
            ).all()
            return [_event_info(e) for e in rows]

    def undo(self, episode_id: int, *, user: str, expected_version: int | None = None) -> EventInfo:
        """Revert the newest change not yet undone (as a new "undo" event). ConflictError if there is none."""
        user = _user(user)
        with self._sf.begin() as session:
            ep = self._episode(session, episode_id)
            target = session.scalars(
                select(EpisodeEvent)
                .where(
                    EpisodeEvent.episode_id == episode_id,
                    EpisodeEvent.undone_by.is_(None),
                    EpisodeEvent.action != "undo",
                )
                .order_by(EpisodeEvent.id.desc())
                .limit(1)
            ).first()
            if target is None:
                raise ConflictError(f"episode {episode_id} has no change left to undo")
            before = {field: pair[0] for field, pair in target.changes.items()}
            event = self._apply(session, ep, before, user=user, action="undo", expected_version=expected_version)
            if event is None:  # every later change is an undo, so the values are `after`; not expected to happen
                raise ConflictError(f"episode {episode_id}: the newest change was already reverted")
            session.execute(update(EpisodeEvent).where(EpisodeEvent.id == target.id).values(undone_by=event.id))
            return event

    # -- bulk and curation -------------------------------------------------------------------------------------------
    def _many(self, session: Session, episode_ids: Iterable[int]) -> list[Episode]:
        ids = list(dict.fromkeys(episode_ids))
        if not ids:
            raise AnnotationError("no episodes selected")
        eps = session.scalars(select(Episode).where(Episode.id.in_(ids))).all()
        missing = sorted(set(ids) - {e.id for e in eps})
        if missing:
            raise NotFoundError(f"no episodes with ids {missing}; nothing was changed")
        by_id = {e.id: e for e in eps}
        return [by_id[i] for i in ids]

    def bulk_edit(self, episode_ids: Iterable[int], changes: Mapping[str, Any], *, user: str) -> list[EventInfo]:
        """The same annotation edit on every selected episode, all or nothing (each gets its own event)."""
        user = _user(user)
        with self._sf.begin() as session:
            eps = self._many(session, episode_ids)
            trashed = [e.id for e in eps if e.deleted_at is not None]
            if trashed:
                raise ConflictError(f"episodes {trashed} are in the trash; restore them before editing")
            events = []
            for ep in eps:
                try:
                    values = validate_changes(changes, length=ep.length, human_success=ep.human_success)
                except AnnotationError as error:
                    raise AnnotationError(f"episode {ep.id}: {error}; nothing was changed") from None
                event = self._apply(session, ep, values, user=user, action="bulk", expected_version=None)
                events += [event] if event else []
            return events

    def move(self, episode_ids: Iterable[int], dataset: str, *, user: str, action: str = "move") -> list[EventInfo]:
        """Move episodes to `dataset` (created if missing). Only the row changes: the files stay in the folder of
        the dataset they were recorded into (storage.checks accepts that)."""
        user = _user(user)
        validate_name(dataset, "dataset name")
        with self._sf.begin() as session:
            eps = self._many(session, episode_ids)
            events = [
                self._apply(session, ep, {"dataset": dataset}, user=user, action=action, expected_version=None)
                for ep in eps
            ]
            return [e for e in events if e]

    def trash(
        self,
        episode_ids: Iterable[int],
        *,
        user: str,
        action: str = "trash",
        expected_version: int | None = None,
    ) -> list[EventInfo]:
        """Move episodes to the trash (they leave listings, exports and new snapshots; restore() brings them back).
        `expected_version` is checked on every episode (meant for one)."""
        user = _user(user)
        with self._sf.begin() as session:
            eps = self._many(session, episode_ids)
            now = utcnow().isoformat()
            events = [
                self._apply(
                    session, ep, {"deleted_at": now}, user=user, action=action, expected_version=expected_version
                )
                for ep in eps
                if ep.deleted_at is None
            ]
            return [e for e in events if e]

    def restore(self, episode_ids: Iterable[int], *, user: str) -> list[EventInfo]:
        user = _user(user)
        with self._sf.begin() as session:
            eps = self._many(session, episode_ids)
            events = [
                self._apply(session, ep, {"deleted_at": None}, user=user, action="restore", expected_version=None)
                for ep in eps
                if ep.deleted_at is not None
            ]
            return [e for e in events if e]

    def check_purgeable(self, episode_ids: Iterable[int]) -> list[int]:
        """The ids, if every one is in the trash and in no snapshot; else ConflictError (nothing purged)."""
        with self._sf() as session:
            eps = self._many(session, episode_ids)
            live = [e.id for e in eps if e.deleted_at is None]
            if live:
                raise ConflictError(f"episodes {live} are not in the trash; only episodes in the trash can be purged")
            held = sorted(
                set(session.scalars(select(SnapshotEpisode.episode_id).where(SnapshotEpisode.episode_id.in_(
                    [e.id for e in eps]
                ))))
            )  # fmt: skip
            if held:
                raise ConflictError(
                    f"episodes {held} belong to a snapshot (a training set must stay reproducible); they stay in "
                    "the trash"
                )
            return [e.id for e in eps]

    def merge_datasets(self, source: str, target: str, *, user: str) -> int:
        """Move every episode of `source` (trash included) into `target` and delete `source`; returns the number
        moved. Snapshots keep naming the dataset they were taken from."""
        validate_name(source, "dataset name")
        validate_name(target, "dataset name")
        if source == target:
            raise AnnotationError("cannot merge a dataset into itself")
        with self._sf() as session:
            src_id = session.scalar(select(Dataset.id).where(Dataset.name == source))
            if src_id is None:
                raise NotFoundError(f"no dataset named {source!r}")
            ids = list(session.scalars(select(Episode.id).where(Episode.dataset_id == src_id).order_by(Episode.id)))
        if ids:
            self.move(ids, target, user=user, action="merge")
        with self._sf.begin() as session:
            if session.scalar(select(Episode.id).where(Episode.dataset_id == src_id).limit(1)) is not None:
                raise ConflictError(f"dataset {source!r} received new episodes during the merge; merge again")
            session.execute(Dataset.__table__.delete().where(Dataset.id == src_id))
        return len(ids)
