"""Store errors -> HTTP answers, for every route: 404 unknown, 409 conflict, 422 bad input. The message is the
store's own sentence (it says what was wrong and what to do), so routes need no try/except of their own."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from storage.errors import (
    AnnotationError,
    ConflictError,
    DestinationNotEmptyError,
    FormatError,
    InvalidNameError,
    NotFoundError,
)


def install_error_handlers(app: FastAPI) -> None:
    async def not_found(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    async def conflict(_: Request, error: Exception) -> JSONResponse:
        body = {"detail": str(error)}
        if isinstance(error, ConflictError) and error.current_version is not None:
            body["current_version"] = error.current_version
        return JSONResponse(body, status_code=409)

    async def unprocessable(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(DestinationNotEmptyError, conflict)
    for cls in (AnnotationError, InvalidNameError, FormatError):
        app.add_exception_handler(cls, unprocessable)
