"""/api/robot/policy on the real RobotSession and sim: an engineer loads a registered model, the lease holder starts
it, frames carry its overlay, the operator takes over and hands back; models that cannot drive this robot are
refused with a clear 4xx before anything changes."""

from __future__ import annotations

import pytest
from auth_client import sign_in
from fastapi.testclient import TestClient
from helpers import FakeClock, save_tiny_policy
from ws_client import frame_with_overlay, take_control

from backend.control import RobotSession
from backend.sim import SimConfig, SimRobot
from vla_core.policies import make_policy
from webapp import create_app

SIM_FIT = dict(cameras=("front", "wrist"), image_size=48, state_dim=7, action_dim=7, chunk_size=4, d_model=32,
               n_heads=2, n_layers=1, intermediate_size=64, vision_channels=(8, 16, 32), n_text_layers=1,
               uncertainty_samples=2, head_hidden=32)  # fmt: skip


@pytest.fixture
def app_and_robot(settings, store):
    robot = SimRobot(SimConfig(image_size=48))
    session = RobotSession(robot, store, clock=FakeClock())
    app = create_app(settings, session=session, store=store, ui=False)
    yield app, session
    robot.close()


@pytest.fixture
def engineer(app_and_robot):
    with TestClient(app_and_robot[0]) as client:
        yield sign_in(client, "erin", "engineer")


def register(app, folder, name="pick"):
    return app.state.models.register(folder, name=name, created_by="trainer")


@pytest.fixture
def fitting_model(app_and_robot, tmp_path):
    folder = tmp_path / "fits"
    make_policy("vla_tiny", **SIM_FIT).save_pretrained(folder)
    return register(app_and_robot[0], folder)


def test_engineer_loads_starts_takes_over_and_hands_back(app_and_robot, engineer, fitting_model):
    app, session = app_and_robot
    r = engineer.post("/api/robot/policy", json={"model_id": fitting_model.id, "help_k": 3})
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["policy"]["model"] == {"id": fitting_model.id, "name": "pick", "version": 1}
    assert st["policy"]["help"]["k"] == 3 and "policy" in st["sources"] and st["source"] == "idle"
    with engineer.websocket_connect("/ws/teleop") as ws:
        take_control(ws)  # before starting the policy: taking control switches to teleop
        assert engineer.post("/api/robot/source", json={"name": "policy"}).json()["source"] == "policy"
        frame = frame_with_overlay(ws)
        assert set(frame["overlay"]["maps"]["attention"]) == {"front", "wrist"}
        assert frame["status"]["policy"]["predictions"] >= 1
        assert engineer.post("/api/robot/policy/continue", json={}).status_code == 400  # it is not asking
        assert engineer.post("/api/robot/policy/takeover", json={}).json()["source"] == "teleop"
        assert engineer.post("/api/robot/policy/handback", json={}).json()["source"] == "policy"
        assert engineer.post("/api/robot/policy/takeover", json={"by": "robot"}).status_code == 422
        assert engineer.post("/api/robot/policy/takeover", json={"by": "expert"}).json()["source"] == "expert"
        assert engineer.post("/api/robot/policy/handback", json={}).json()["source"] == "policy"
    assert engineer.request("DELETE", "/api/robot/policy", json={}).json()["policy"] is None


def test_models_that_cannot_drive_this_robot_are_refused(app_and_robot, engineer, tmp_path):
    app, session = app_and_robot
    other_robot = register(app, save_tiny_policy(tmp_path / "one-camera"), name="other-arm")  # 1 camera, 2-D
    r = engineer.post("/api/robot/policy", json={"model_id": other_robot.id})
    assert r.status_code == 400
    assert "needs camera(s)" not in r.json()["detail"]  # its one camera, front, is the sim's
    assert "2-D state" in r.json()["detail"] and "2-D actions" in r.json()["detail"]
    assert engineer.post("/api/robot/policy", json={"model_id": 999}).status_code == 404
    assert engineer.post("/api/robot/policy", json={}).status_code == 404  # nothing in production
    assert engineer.post("/api/robot/policy", json={"help_k": 0}).status_code == 422

    folder = tmp_path / "altered"
    make_policy("vla_tiny", **SIM_FIT).save_pretrained(folder)
    altered = register(app, folder, name="altered")
    weights = next(p for p in altered.path.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-10])
    r = engineer.post("/api/robot/policy", json={"model_id": altered.id})
    assert r.status_code == 409 and "safetensors" in r.json()["detail"]
    assert session.policy is None and engineer.get("/api/robot/status").json()["policy"] is None


def test_operators_may_step_in_but_not_load_models(app_and_robot, fitting_model):
    app, session = app_and_robot
    with TestClient(app) as client:
        operator = sign_in(client, "olga", "operator")
        assert operator.post("/api/robot/policy", json={"model_id": fitting_model.id}).status_code == 403
        assert operator.post("/api/robot/policy/takeover", json={}).status_code == 403  # not the lease holder
        session.acquire_lease("olga-tab", "olga")
        assert operator.post("/api/robot/policy/takeover", json={}).status_code == 400  # no policy is driving


def test_a_live_rollout_is_listed_and_downloadable(app_and_robot, engineer, fitting_model):
    import csv
    import io

    import pyarrow.parquet as pq

    app, session = app_and_robot
    engineer.post("/api/robot/policy", json={"model_id": fitting_model.id})
    with engineer.websocket_connect("/ws/teleop") as ws:
        take_control(ws)  # before starting the policy: taking control switches to teleop
        engineer.post("/api/robot/source", json={"name": "policy"})
        frame_with_overlay(ws)
        engineer.post("/api/robot/reset", json={"seed": 3})  # ends the rollout
    page = engineer.get("/api/rollouts", params={"model_id": fitting_model.id}).json()
    assert page["count"] == 1
    (r,) = page["data"]
    assert (r["kind"], r["model_name"], r["operator"], r["outcome"]) == ("live", "pick", "erin", "failure")
    assert r["steps"] >= 1 and r["extra"]["ended_by"] == "reset"
    assert engineer.get(f"/api/rollouts/{r['id']}").json()["id"] == r["id"]
    assert engineer.get("/api/rollouts/999").status_code == 404
    assert engineer.get("/api/rollouts", params={"outcome": "great"}).status_code == 422
    lines = list(csv.reader(io.StringIO(engineer.get("/api/rollouts.csv").text)))
    assert lines[0][:3] == ["id", "kind", "model_id"] and len(lines) == 2
    table = pq.read_table(io.BytesIO(engineer.get("/api/rollouts.parquet").content))
    assert table.num_rows == 1 and table.column("model_name").to_pylist() == ["pick"]


def test_a_correction_takes_signals_carry_uncertainty_and_interventions(app_and_robot, engineer, store):
    from helpers import record_episode, synthetic_step

    actors = ["policy"] * 3 + ["teleop"] * 2

    def step(i, cameras):
        return {**synthetic_step(i, cameras), "actor": actors[i], "intervention": actors[i] == "teleop",
                "uncertainty": 0.25 * i if actors[i] == "policy" else None}  # fmt: skip

    model = {"id": 7, "name": "pick", "version": 2}
    corrected = record_episode(store, len(actors), step=step, source="intervention", extra={"model": model})
    assert engineer.get(f"/api/episodes/{corrected}").json()["extra"]["model"] == model  # which model was corrected
    sig = engineer.get(f"/api/episodes/{corrected}/signals").json()
    assert sig["actor"] == actors and sig["intervention"] == [False] * 3 + [True] * 2
    assert sig["uncertainty"] == [0.0, 0.25, 0.5, None, None]
    plain = engineer.get(f"/api/episodes/{record_episode(store, 4)}/signals").json()
    assert plain["uncertainty"] is None and plain["actor"] is None
