"""The one Settings object of the app (environment prefix ``VLA_``), built once in run.py and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VLA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Episodes, videos and the default SQLite file.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/vla.db")
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    mujoco_gl: Literal["egl", "osmesa", "glfw"] = "egl"
    image_size: int = Field(default=224, ge=32, le=1024, description="Square camera resolution in pixels.")
    policy_process: bool = Field(
        default=True,
        description="Serve a policy loaded onto the robot from a process of its own (its inference then never holds "
        "the control loop's interpreter lock: bench/bench_policy_loop.py); false runs it on a thread.",
    )
    robot_process: bool = Field(
        default=True,
        description="Run the robot's control loop, safety filter, lease and deadman, recorder and policy in a "
        "process of their own (backend.runtime), so nothing the web server does can stall them "
        "(bench/bench_runtime_isolation.py); false keeps them on a thread of the web server.",
    )
    control_hz: int = Field(default=30, ge=1, le=500)
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body; a bigger one gets 413 before it is read."
    )
    models_dir: Path | None = Field(default=None, description="Registered models; default <data_dir>/models.")
    max_model_upload_bytes: int = Field(
        default=1024**3,
        ge=1024,
        description="Largest model archive POST /api/models/import takes (instead of max_body_bytes); a bigger one "
        "gets 413 before it is read.",
    )
    # Signs session cookies. Unset: generated once and kept in <data_dir>/secret_key (mode 0600), so sessions
    # survive a restart; set it (32+ characters) when several servers share one database.
    secret_key: str | None = Field(default=None, min_length=32, repr=False)
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 86400, description="Sign-in session lifetime.")
    sign_in_link_ttl_s: int = Field(default=3600, ge=60, le=86400, description="First-start admin link lifetime.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the dashboard answers to besides loopback and VLA_HOST (comma-separated in "
        "VLA_ALLOWED_HOSTS, e.g. the name behind a TLS proxy); any other Host header gets 400 (DNS rebinding).",
    )
    # The job runner (backend/jobs): workers claim jobs from the database and write a heartbeat while they run one.
    worker_threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="CPU threads a job may use (torch, OpenMP, BLAS); default every core but one, which stays with "
        "the control loop so an operator can teleoperate while a model trains.",
    )
    job_heartbeat_s: float = Field(
        default=2.0, ge=0.05, le=60, description="How often a worker records that it is alive on its job."
    )
    job_stale_after_s: float = Field(
        default=30.0,
        ge=0.5,
        le=3600,
        description="A running job whose heartbeat is older than this lost its worker (killed, machine down) and is "
        "re-queued by any worker; at least 3 heartbeat intervals.",
    )
    job_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules (comma-separated in VLA_JOB_PLUGINS) imported by the server and every worker to "
        "register more job kinds (@backend.jobs.register_handler).",
    )

    @field_validator("allowed_hosts", "job_plugins", mode="before")
    @classmethod
    def _split_comma_list(cls, value):
        return [name.strip() for name in value.split(",") if name.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'vla.db').resolve()}"
        if self.models_dir is None:
            self.models_dir = self.data_dir / "models"
        return self

    def session_secret(self) -> bytes:
        """secret_key, else the key in <data_dir>/secret_key, created (random, mode 0600) if missing."""
        if self.secret_key is not None:
            return self.secret_key.encode()
        return _load_or_create_secret(self.data_dir / "secret_key")


def _load_or_create_secret(path: Path) -> bytes:
    """Read the key file; if there is none, write a new one atomically (two processes starting at once agree)."""
    import os
    import secrets

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # fails if another process got there first: then its key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds a key shorter than 32 characters; delete it to have a new one made")
    return key.encode()
