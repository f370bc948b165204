"""Errors -> HTTP answers, the one place that maps them, so routes need no try/except of their own.

Store errors, for every route: 404 unknown, 409 conflict, 422 bad input. The message is the store's own sentence
(it says what was wrong and what to do). A registered model whose files are missing or altered
(backend.services.models.ModelIntegrityError) is a 409 listing them.

Two contracts below speak built-in errors, and they mean an HTTP answer only on the routes that call them, so
they are mapped per router (a route class) rather than app-wide, where a ValueError from a bug would turn into a
4xx instead of a 500:
- the robot session (backend.control.RobotSession): bad value 400, unknown 404, wrong state 409
  (NoRecordingError and RecordingActiveError are RuntimeErrors);
- the episode query (storage.episode_query.EpisodeQuery.validate): a filter it refuses 422;
- the training launch (backend.jobs.train.submit_training): an empty snapshot, an unfit base model, a bad option 422;
- the evaluation launch (backend.jobs.evaluate.submit_evaluation): an unknown task or colour, a model the sim cannot
  drive 422.

A request that fails validation gets 422 with {"detail": [{"loc", "msg", "type"}, ...]}: never the input itself
(FastAPI's default handler echoes it, which fails with a 500 on a string that is not valid Unicode and sends a
megabyte back for a megabyte in). Every error answer is documented in the OpenAPI schema (document_errors).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError

from backend.services.auth import InvalidCredentials, PasswordPolicyError, SignInThrottled
from backend.services.models import ModelIntegrityError
from storage.errors import (
    AnnotationError,
    ConflictError,
    DestinationNotEmptyError,
    FormatError,
    InvalidNameError,
    NotFoundError,
)
from webapp.control import RuntimeUnavailableError

MAX_ECHO_CHARS = 64  # the most of a client's own text (a key in `loc`) that an error answer repeats


class ErrorOut(BaseModel):
    """An error answer other than a validation failure (those have FastAPI's list of {loc, msg, type})."""

    detail: str = Field(description="what was wrong and what to do")
    current_version: int | None = Field(None, description="409 on an edit: the episode's version now")


ERROR_DESCRIPTIONS = {
    400: "a value the robot session refuses, or a body that is not readable JSON",
    401: "not signed in (no valid session cookie or API token)",
    403: "signed in, but the role may not do this, the CSRF token is missing, or another user holds the lease",
    404: "no such object",
    409: "the object is not in a state that allows this",
    413: "the request body is over the size limit (Settings.max_body_bytes; an upload: max_model_upload_bytes), "
    "refused before it is read",
    415: "the body is not of a type this operation takes",
    429: "too many failed sign-ins: try again after Retry-After seconds",
    428: "the edit does not say which version it was made on (body field `version` or If-Match)",
}


def error_responses(*statuses: int, described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: the given error statuses with ErrorOut bodies (descriptions from
    ERROR_DESCRIPTIONS unless `described` has one)."""
    texts = ERROR_DESCRIPTIONS | (described or {})
    return {status: {"model": ErrorOut, "description": texts[status]} for status in statuses}


def _bounded(text: str, limit: int) -> str:
    """Text safe to send back: lone surrogates escaped (they cannot be encoded), at most `limit` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _validation_issues(error: RequestValidationError) -> list[dict[str, Any]]:
    """loc, msg and type of each problem; `input` and `ctx` are left out (they hold the client's data)."""
    return [
        {
            "loc": [p if isinstance(p, int) else _bounded(str(p), MAX_ECHO_CHARS) for p in issue["loc"]],
            "msg": _bounded(issue["msg"], 500),
            "type": issue["type"],
        }
        for issue in error.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    async def invalid_request(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return JSONResponse({"detail": _validation_issues(error)}, status_code=422)

    async def not_found(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    async def conflict(_: Request, error: Exception) -> JSONResponse:
        body = {"detail": str(error)}
        if isinstance(error, ConflictError) and error.current_version is not None:
            body["current_version"] = error.current_version
        return JSONResponse(body, status_code=409)

    async def unprocessable(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    async def wrong_credentials(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=401)

    async def throttled(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, SignInThrottled)
        headers = {"Retry-After": str(error.retry_after_s)}
        return JSONResponse({"detail": str(error)}, status_code=429, headers=headers)

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(InvalidCredentials, wrong_credentials)
    app.add_exception_handler(SignInThrottled, throttled)
    app.add_exception_handler(PasswordPolicyError, unprocessable)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(ModelIntegrityError, conflict)  # files missing or altered: refused, with the list
    app.add_exception_handler(DestinationNotEmptyError, conflict)
    for cls in (AnnotationError, InvalidNameError, FormatError):
        app.add_exception_handler(cls, unprocessable)
    document_errors(app)


def document_errors(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the app answers: a 422's `detail` is a sentence (the app's own checks)
    or FastAPI's list of problems, and every operation with a body may get 413 (size limit) or 400 (not JSON)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI's own, cached on app.openapi_schema: amended in place once
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ErrorOut", ErrorOut.model_json_schema())
        if "HTTPValidationError" in components:
            detail = components["HTTPValidationError"]["properties"]["detail"]
            components["HTTPValidationError"]["properties"]["detail"] = {"anyOf": [{"type": "string"}, detail]}
            components["HTTPValidationError"]["required"] = ["detail"]
        error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        # The body limit (webapp.security.BodyLimit) answers a Content-Length over it in plain text, a chunked body
        # that runs over it as {"detail": "Content Too Large"}.
        too_large_body = error_body | {"text/plain": {"schema": {"type": "string"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "requestBody" in operation:
                    responses = operation["responses"]
                    responses.setdefault("400", {"description": ERROR_DESCRIPTIONS[400], "content": error_body})
                    responses.setdefault("413", {"description": ERROR_DESCRIPTIONS[413], "content": too_large_body})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
# RuntimeUnavailableError: the robot runtime process is (re)starting or did not answer (Settings.robot_process).
RobotSessionRoute = _mapping_route({RuntimeUnavailableError: 503, LookupError: 404, ValueError: 400, RuntimeError: 409})
EpisodeQueryRoute = _mapping_route({ValueError: 422})
MetricsQueryRoute = _mapping_route({ValueError: 422})
TrainingLaunchRoute = _mapping_route({LookupError: 404, ValueError: 422})
EvaluationLaunchRoute = _mapping_route({LookupError: 404, ValueError: 422})
