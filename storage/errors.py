"""Errors the store raises for bad input. Each message says what was wrong and what to do instead."""


class StoreError(Exception):
    """Base class: bad input or a broken store; the CLI prints the message and exits non-zero."""


class InvalidNameError(StoreError, ValueError):
    """A dataset name that is not a plain identifier (path separators, '..', empty, too long)."""


class NotFoundError(StoreError, LookupError):
    """A dataset or episode that does not exist."""


class FormatError(StoreError, ValueError):
    """An import folder that is corrupt, truncated or not the format it claims to be."""


class DestinationNotEmptyError(StoreError, FileExistsError):
    """An export target that already holds files; nothing is overwritten."""


class RecorderClosedError(StoreError, RuntimeError):
    """An EpisodeRecorder used after save() or discard(); start a new take with EpisodeStore.begin()."""


class EmptyEpisodeError(StoreError, ValueError):
    """save() on a take without frames; record at least one frame or discard() it."""


class RecordingError(StoreError, RuntimeError):
    """Encoding or writing a take failed (disk full, codec error); nothing was saved."""


class AnnotationError(StoreError, ValueError):
    """An annotation edit that does not fit the episode (empty instruction, segment outside it, ...)."""


class ConflictError(StoreError):
    """The episode changed since the version the edit was made on, or the operation does not fit its state
    (editing an episode in the trash, purging one a snapshot holds). Nothing was changed."""

    def __init__(self, message: str, *, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version
