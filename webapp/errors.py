"""Errors -> HTTP answers, the one place that maps them, so routes need no try/except of their own.

Store errors, for every route: 404 unknown, 409 conflict, 422 bad input. The message is the store's own sentence
(it says what was wrong and what to do).

Two contracts below speak built-in errors, and they mean an HTTP answer only on the routes that call them, so
they are mapped per router (a route class) rather than app-wide, where a ValueError from a bug would turn into a
4xx instead of a 500:
- the robot session (backend.control.RobotSession): bad value 400, unknown 404, wrong state 409
  (NoRecordingError and RecordingActiveError are RuntimeErrors);
- the episode query (storage.episode_query.EpisodeQuery.validate): a filter it refuses 422.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

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


def _mapping_route(statuses: dict[type[Exception], int]) -> type[APIRoute]:
    """A route class that answers the given built-in errors with {status, {"detail": message}} (first match in
    order). HTTPException and pydantic's ValidationError (a ValueError, but a bug in building a response) pass
    through untouched."""

    class MappingRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except (HTTPException, ValidationError):
                    raise
                except tuple(statuses) as error:
                    status = next(code for cls, code in statuses.items() if isinstance(error, cls))
                    raise HTTPException(status, str(error)) from error

            return handle

    return MappingRoute


# NotFoundError is a LookupError: listed first so a store miss stays a 404 on these routes too.
RobotSessionRoute = _mapping_route({LookupError: 404, ValueError: 400, RuntimeError: 409})
EpisodeQueryRoute = _mapping_route({ValueError: 422})
