"""Bad input gets a 4xx, never a 500, and never its own text back: integers past SQL's 64 bits, strings that are not
valid Unicode, bodies over the size limit (refused before they are read), and the OpenAPI schema says so."""

from __future__ import annotations

import asyncio
import json

import pytest
from auth_client import bearer
from episode_factory import record_episode

from backend.settings import Settings
from webapp import create_app

TOO_BIG = 2**63  # one past SQLite's (and PostgreSQL BIGINT's) largest integer: OverflowError in the driver
MiB = 1024 * 1024
pytestmark = pytest.mark.usefixtures("lease")  # /api/robot/reset is among the calls: the signed-in user drives


@pytest.fixture
def ep(store) -> int:
    return record_episode(store)


def _calls_with_too_big_integers(ep: int) -> list[tuple[str, str, dict]]:
    """(method, url, request kwargs): 2^63 in every place an integer goes (path, query, body, header)."""
    user: dict = {}  # identity comes from the session, so no field for it
    edit = f"/api/episodes/{ep}/annotation"
    segment = {"start": TOO_BIG, "end": TOO_BIG, "text": "t"}
    return [
        ("GET", f"/api/episodes/{TOO_BIG}", {}),
        ("GET", f"/api/episodes/{TOO_BIG}/history", {}),
        ("GET", f"/api/episodes/{TOO_BIG}/signals", {}),
        ("GET", f"/api/episodes/{TOO_BIG}/thumbnail.jpg", {}),
        ("GET", f"/api/episodes/{TOO_BIG}/video/front.mp4", {}),
        ("GET", f"/api/episodes?offset={TOO_BIG}", {}),
        ("GET", f"/api/snapshots/{TOO_BIG}", {}),
        ("GET", f"/api/exports/{TOO_BIG}", {}),
        ("POST", f"/api/episodes/{TOO_BIG}/undo", {"json": user}),
        ("POST", f"/api/episodes/{TOO_BIG}/quality", {"json": {}}),
        ("PATCH", f"/api/episodes/{TOO_BIG}/annotation", {"json": {**user, "version": 1, "notes": "x"}}),
        ("PATCH", edit, {"json": {**user, "version": TOO_BIG, "notes": "x"}}),
        ("PATCH", edit, {"json": {**user, "notes": "x"}, "headers": {"If-Match": f'"{TOO_BIG}"'}}),
        ("PATCH", edit, {"json": {**user, "version": 1, "segments": [segment]}}),
        ("POST", f"/api/episodes/{ep}/undo", {"json": {**user, "version": TOO_BIG}}),
        ("POST", f"/api/episodes/{ep}/trim", {"json": {**user, "start": 0, "end": TOO_BIG}}),
        ("POST", f"/api/episodes/{ep}/split", {"json": {**user, "at": TOO_BIG}}),
        ("POST", "/api/episodes/bulk", {"json": {**user, "op": "trash", "episode_ids": [ep, TOO_BIG]}}),
        ("POST", "/api/snapshots", {"json": {**user, "name": "s", "dataset": "teleop", "episode_ids": [TOO_BIG]}}),
        ("POST", "/api/robot/reset", {"json": {"seed": TOO_BIG}}),
    ]  # fmt: skip


def test_integers_past_64_bits_get_422_everywhere(client, ep) -> None:
    for method, url, kwargs in _calls_with_too_big_integers(ep):
        r = client.request(method, url, **kwargs)
        assert r.status_code == 422, (method, url, r.status_code, r.text)
        assert str(TOO_BIG) not in r.text, (method, url)  # the limit may be named, the input is not echoed


def test_the_largest_64_bit_integer_is_still_a_plain_miss(client) -> None:
    assert client.get(f"/api/episodes/{TOO_BIG - 1}").status_code == 404
    assert client.get(f"/api/snapshots/{TOO_BIG - 1}").status_code == 404


def _raw_json(client, method: str, url: str, text: str):
    """Send `text` as the JSON body verbatim (json= would refuse to encode a lone surrogate)."""
    return client.request(method, url, content=text.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("PATCH", "/api/episodes/{ep}/annotation", '{"version": 1, "notes": "x\\ud800"}'),
        ("PATCH", "/api/episodes/{ep}/annotation", '{"version": 1, "paraphrases": ["\\udfff"]}'),
        ("POST", "/api/episodes/bulk", '{"op": "annotate", "episode_ids": [{ep}], '
                                       '"changes": {"notes": "\\ud800"}}'),
        ("POST", "/api/robot/reset", '{"\\ud800": 1}'),
        ("POST", "/api/robot/reset", '{"instruction": "\\ud800"}'),
        ("POST", "/api/snapshots", '{"name": "s", "dataset": "\\ud800"}'),
    ],
)  # fmt: skip
def test_lone_surrogates_in_a_body_get_422_without_the_input(client, ep, method, url, body) -> None:
    r = _raw_json(client, method, url.replace("{ep}", str(ep)), body.replace("{ep}", str(ep)))
    assert r.status_code == 422, r.text
    r.content.decode("utf-8")  # the answer is valid UTF-8 ...
    assert "ud800" not in r.text and "udfff" not in r.text  # ... and does not repeat the bad text
    assert [set(issue) for issue in r.json()["detail"]] == [{"loc", "msg", "type"}]


def test_lone_surrogates_in_a_query_string_are_no_server_error(client) -> None:
    # Percent-encoded surrogates are not UTF-8; the server decodes them as U+FFFD, which is just a string.
    for query in ("instruction=%ED%A0%80", "dataset=%ED%A0%80", "operator=%ED%BF%BF"):
        r = client.get(f"/api/episodes?{query}")
        assert r.status_code == 200 and r.json()["count"] == 0, query


def test_bulk_changes_are_checked_like_a_single_edit(client, ep) -> None:
    for changes in ({"colour": "red"}, {"human_success": "maybe"}, {"notes": "x" * 5001}):
        body = {"op": "annotate", "episode_ids": [ep], "changes": changes}
        r = client.post("/api/episodes/bulk", json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "changes"], changes
    r = client.post("/api/episodes/bulk", json={"op": "annotate", "episode_ids": [ep], "changes": {}})
    assert r.status_code == 422 and "needs the changes" in r.json()["detail"]
    body = {"op": "annotate", "episode_ids": [ep], "changes": {"notes": "ok", "human_success": False}}
    assert client.post("/api/episodes/bulk", json=body).json() == {"episode_ids": [ep]}
    assert client.get(f"/api/episodes/{ep}").json()["notes"] == "ok"


def test_error_bodies_never_repeat_the_input(client, ep) -> None:
    long_text = "é" * 100_000
    answers = [
        client.patch(f"/api/episodes/{ep}/annotation", json={"version": 1, "notes": long_text}),
        client.post("/api/robot/reset", json={long_text: 1}),  # an unknown key: named in `loc`, cut short
        client.post("/api/robot/source", json={"name": long_text}),
        client.patch(f"/api/episodes/{ep}/annotation", json={}, headers={"If-Match": "z" * 4000}),
        client.get(f"/api/episodes?created_from={'9' * 5000}"),
        _raw_json(client, "POST", "/api/robot/reset", '{"seed": ' + "1" * 5000 + "}"),  # past int's 4,300 digits
        _raw_json(client, "POST", "/api/robot/reset", '{"seed": ' + "1" * 100),  # not JSON
    ]  # fmt: skip
    for r in answers:
        assert r.status_code in (400, 422), r.text[:300]
        assert len(r.content) < 1000, r.text[:300]


# -- the body size limit -------------------------------------------------------------------------------------------
def _call_asgi(app, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, bytes, int]:
    """POST to the ASGI app directly, the body arriving in `chunks`: (status, response body, chunks it read).
    TestClient would read the whole body before the app sees any of it."""
    read = 0
    status, body = 0, b""

    async def receive() -> dict:
        nonlocal read
        if read == len(chunks):
            await asyncio.sleep(3600)  # a client that has sent everything waits for the answer
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "testserver", **headers}.items()],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    return status, body, read


def _padded_bulk(size: int, chunk: int = 64 * 1024) -> list[bytes]:
    """A valid bulk body padded with whitespace to `size` bytes (a 20 MB one was accepted before), in chunks."""
    head = b'{"op": "trash", "episode_ids": [1]'
    data = head + b" " * (size - len(head) - 1) + b"}"
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


def test_a_body_over_the_limit_with_its_length_is_refused_before_it_is_read(app) -> None:
    chunks = _padded_bulk(2 * MiB)
    headers = {"content-type": "application/json", "content-length": str(2 * MiB)}
    status, body, read = _call_asgi(app, "/api/episodes/bulk", chunks, headers)
    assert status == 413 and read == 0, (status, read)
    assert body == b"Content Too Large"  # FastAPI's limit answers in plain text here (documented so)


def test_a_chunked_body_over_the_limit_is_cut_off_at_the_limit(app) -> None:
    chunks = _padded_bulk(4 * MiB)  # 64 KiB chunks, no Content-Length
    status, body, read = _call_asgi(app, "/api/episodes/bulk", chunks, {"content-type": "application/json"})
    assert status == 413 and read <= MiB // (64 * 1024) + 1, (status, read, len(chunks))
    assert json.loads(body) == {"detail": "Content Too Large"}


def test_a_body_under_the_limit_is_read(app, store) -> None:
    ep = record_episode(store)
    chunks = _padded_bulk(MiB // 2)
    chunks[0] = chunks[0].replace(b"[1]", f"[{ep}]".encode())
    headers = {"content-type": "application/json", **bearer(app, "alice", "admin")}
    status, body, _ = _call_asgi(app, "/api/episodes/bulk", chunks, headers)
    assert status == 200 and json.loads(body) == {"episode_ids": [ep]}


def test_the_limit_is_a_setting(monkeypatch, tmp_path, robot, store) -> None:
    monkeypatch.setenv("VLA_MAX_BODY_BYTES", "4096")
    settings = Settings(data_dir=tmp_path / "data", allowed_hosts=["testserver"])
    assert settings.max_body_bytes == 4096
    app = create_app(settings, session=robot, store=store, ui=False)
    status, _, _ = _call_asgi(app, "/api/episodes/bulk", _padded_bulk(8192), {"content-type": "application/json"})
    assert status == 413


# -- the OpenAPI schema --------------------------------------------------------------------------------------------
def test_the_openapi_schema_documents_the_error_answers(client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for url, operations in paths.items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert {"400", "413"} <= set(operation["responses"]), (method, url)
                assert set(operation["responses"]["413"]["content"]) == {"application/json", "text/plain"}
            if "{episode_id}" in url or "{job_id}" in url or "{snapshot}" in url:
                assert "404" in operation["responses"], (method, url)
    annotate = paths["/api/episodes/{episode_id}/annotation"]["patch"]["responses"]
    assert {"404", "409", "422", "428"} <= set(annotate)
    assert "409" in paths["/api/snapshots"]["post"]["responses"]
    detail = schema["components"]["schemas"]["HTTPValidationError"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]  # the app's own 422s carry a sentence, FastAPI's a list
