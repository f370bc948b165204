"""/api/models over HTTP: listing and filters, details with lineage and the file check, compare, curves, stages,
notes, download -> import round trip, the upload's own body limit, and who may do what. Models are registered the
way a training job registers them (the app's ModelRegistry), from a real saved vla_tiny folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import save_tiny_policy

from backend.settings import Settings

UPLOAD_LIMIT = 2 * 1024 * 1024  # above the tiny model's archive (~0.25 MB), which is above the app's body limit
GZIP = {"Content-Type": "application/gzip"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        image_size=64,
        allowed_hosts=["testserver"],
        max_body_bytes=64 * 1024,
        max_model_upload_bytes=UPLOAD_LIMIT,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    metadata = {"final_val_loss": 0.3, "steps": 30, "closed_loop": {"success_rate": 0.5, "seeds": [1, 2]}}
    return save_tiny_policy(tmp_path_factory.mktemp("policy") / "out", training_metadata=metadata, metrics_lines=2)


@pytest.fixture
def register(app, saved, tmp_path):
    def register(name: str = "pick", **kwargs):
        folder = tmp_path / f"trained-{name}"
        if not folder.exists():
            shutil.copytree(saved, folder)
        return app.state.models.register(folder, name=name, created_by="trainer", **kwargs)

    return register


def test_list_details_compare_and_curves(client, register) -> None:
    v1 = register()
    v2 = register(parent_id=v1.id, metrics={"val_loss": 0.2})
    other = register("place")

    page = client.get("/api/models").json()
    assert page["count"] == 3 and [m["id"] for m in page["data"]] == [other.id, v2.id, v1.id]
    assert [m["version"] for m in client.get("/api/models", params={"name": "pick"}).json()["data"]] == [2, 1]
    assert client.get("/api/models", params={"stage": "production"}).json() == {"data": [], "count": 0}
    assert client.get("/api/models", params={"stage": "gold"}).status_code == 422
    paged = client.get("/api/models", params={"limit": 1, "offset": 1}).json()
    assert paged["count"] == 3 and [m["id"] for m in paged["data"]] == [v2.id]  # count: all that match
    assert client.get("/api/models", params={"limit": 0}).status_code == 422

    detail = client.get(f"/api/models/{v2.id}").json()
    assert detail["problems"] == [] and detail["policy_type"] == "vla_tiny" and detail["metrics"]["val_loss"] == 0.2
    assert [p["id"] for p in detail["lineage"]["parents"]] == [v1.id]
    assert detail["lineage"]["snapshot"] is None and detail["files"] == v2.files
    (v2.path / "normalization.json").write_text("{}")
    problems = client.get(f"/api/models/{v2.id}").json()["problems"]
    assert problems == ["altered: normalization.json (its sha256 is not the registered one)"]

    diff = client.get(f"/api/models/{v1.id}/compare/{v2.id}").json()
    assert diff["a"]["id"] == v1.id and diff["config_diff"] == []
    assert {"key": "val_loss", "a": 0.3, "b": 0.2} in diff["metrics"]
    assert diff["closed_loop"]["same_seeds"] is True  # the same two seeds
    curves = client.get(f"/api/models/{v1.id}/curves").json()["records"]
    assert [r["step"] for r in curves] == [10, 20]
    for path in ("/api/models/999", "/api/models/999/curves", f"/api/models/{v1.id}/compare/999"):
        assert client.get(path).status_code == 404, path


def test_promote_archive_and_notes_are_audited(client, register) -> None:
    v1, v2 = register(), register()
    assert client.post(f"/api/models/{v1.id}/promote", json={}).json()["stage"] == "production"
    assert client.post(f"/api/models/{v2.id}/promote", json={}).json()["stage"] == "production"
    assert client.get(f"/api/models/{v1.id}").json()["stage"] == "candidate"

    refused = client.post(f"/api/models/{v2.id}/archive", json={})
    assert refused.status_code == 409 and "promote another version first" in refused.json()["detail"]
    assert client.post(f"/api/models/{v1.id}/archive", json={}).json()["stage"] == "archived"
    assert client.patch(f"/api/models/{v1.id}", json={"notes": "retired"}).json()["notes"] == "retired"
    assert client.patch(f"/api/models/{v1.id}", json={"notes": "x" * 10_001}).status_code == 422
    assert client.patch(f"/api/models/{v1.id}", json={"stage": "production"}).status_code == 422
    assert client.post("/api/models/999/promote", json={}).status_code == 404

    (v1.path / "vocab.json").unlink()
    damaged = client.post(f"/api/models/{v1.id}/promote", json={})
    assert damaged.status_code == 409 and "missing: vocab.json" in damaged.json()["detail"]
    assert client.get(f"/api/models/{v1.id}/download").status_code == 409

    events = client.get("/api/audit", params={"object_type": "model"}).json()["data"]
    actions = [(e["action"], e["actor"]) for e in reversed(events)]
    assert actions == [
        ("model.register", "trainer"),
        ("model.register", "trainer"),
        ("model.promote", "alice"),
        ("model.promote", "alice"),
        ("model.archive", "alice"),
        ("model.notes", "alice"),
    ]


def test_download_then_import_gives_identical_checksums(client, register, app) -> None:
    original = register(notes="15-min run")
    download = client.get(f"/api/models/{original.id}/download")
    assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
    assert 'filename="pick-v1.tar.gz"' in download.headers["content-disposition"]
    assert len(download.content) > 64 * 1024  # over the app's body limit: the upload has its own

    imported = client.post("/api/models/import", params={"name": "pick-copy"}, content=download.content, headers=GZIP)
    assert imported.status_code == 201, imported.text
    body = imported.json()
    assert body["files"] == original.files and body["notes"] == "15-min run" and body["version"] == 1
    assert client.get(f"/api/models/{body['id']}").json()["problems"] == []

    bad = {
        "not gzip": (b"not an archive", GZIP, 422),
        "json": (b"{}", {"Content-Type": "application/json"}, 415),
        "text": (download.content, {"Content-Type": "text/plain"}, 415),
    }
    for label, (content, headers, status) in bad.items():
        r = client.post("/api/models/import", params={"name": "bad"}, content=content, headers=headers)
        assert r.status_code == status, (label, r.text)
    assert client.post("/api/models/import", params={"name": "../x"}, content=b"x", headers=GZIP).status_code == 422
    assert client.post("/api/models/import", content=download.content, headers=GZIP).status_code == 422  # no name
    assert client.get("/api/models", params={"name": "bad"}).json()["count"] == 0
    assert list(app.state.models.staging_dir.iterdir()) == []


def test_an_upload_over_its_limit_gets_413_and_other_routes_keep_theirs(client, register, app) -> None:
    model = register()
    too_big = b"\0" * (UPLOAD_LIMIT + 1)
    r = client.post("/api/models/import", params={"name": "big"}, content=too_big, headers=GZIP)
    assert r.status_code == 413

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(UPLOAD_LIMIT // 65536 + 2):
            yield b"\0" * 65536

    r = client.post("/api/models/import", params={"name": "big"}, content=chunks(), headers=GZIP)
    assert r.status_code == 413
    assert client.get("/api/models", params={"name": "big"}).json()["count"] == 0
    assert list(app.state.models.staging_dir.iterdir()) == []
    # The rest of the API keeps max_body_bytes (64 KiB here).
    assert client.patch(f"/api/models/{model.id}", json={"notes": "x" * 70_000}).status_code == 413


def test_who_may_read_and_change_models(client_as, register, app) -> None:
    model = register()
    operator, manager, engineer = (client_as(n, n) for n in ("operator", "manager", "engineer"))
    assert operator.get("/api/models").status_code == 403
    assert manager.get(f"/api/models/{model.id}").status_code == 200
    assert manager.get(f"/api/models/{model.id}/download").status_code == 200
    assert manager.post(f"/api/models/{model.id}/promote", json={}).status_code == 403
    assert operator.post("/api/models/import", params={"name": "x"}, content=b"x", headers=GZIP).status_code == 403
    assert engineer.post(f"/api/models/{model.id}/promote", json={}).json()["stage"] == "production"

    engineer.headers.pop("X-CSRF-Token")  # a browser session's upload needs the CSRF header like any write
    r = engineer.post("/api/models/import", params={"name": "x"}, content=b"x", headers=GZIP)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
