"""The one Settings object of the app (environment prefix ``VLA_``), built once in run.py and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VLA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Episodes, videos and the default SQLite file.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/vla.db")
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    mujoco_gl: Literal["egl", "osmesa", "glfw"] = "egl"
    image_size: int = Field(default=224, ge=32, le=1024, description="Square camera resolution in pixels.")
    control_hz: int = Field(default=30, ge=1, le=500)

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.data_dir / 'vla.db').resolve()}"
        return self
