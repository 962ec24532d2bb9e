"""Service settings: one BaseSettings, from ACTSTUDY_* variables (and RAY_*/MLFLOW_* where those are standard)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACTSTUDY_", extra="ignore", populate_by_name=True)

    environment: str = "development"  # development | production
    data_dir: Path = Path(".actstudy")
    database_url: str | None = None  # default: SQLite under data_dir
    # None: `actstudy serve` makes one on first start and keeps it in <data_dir>/admin-token (owner-only);
    # a value here (ACTSTUDY_ADMIN_TOKEN) wins. There is no built-in one.
    admin_token: str | None = None
    # Ray's Jobs API (the dashboard address, e.g. http://head:8265) and its auth token.
    ray_jobs_url: str | None = Field(None, validation_alias=AliasChoices("ACTSTUDY_RAY_JOBS_URL", "RAY_API_SERVER_ADDRESS"))
    ray_auth_token: str | None = Field(None, validation_alias=AliasChoices("ACTSTUDY_RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN"))
    mlflow_uri: str | None = Field(None, validation_alias=AliasChoices("ACTSTUDY_MLFLOW_URI", "MLFLOW_TRACKING_URI"))
    mlflow_public_url: str | None = None  # how users reach the MLflow UI, if not mlflow_uri
    # Folders a submitted spec's dataset.data_root may name (and anything below them), as the nodes mount
    # them; none configured: a spec names no data_root and each node reads its own $ACTSTUDY_DATA_ROOT.
    data_roots: list[Path] = []
    public_url: str | None = None  # how users reach this API (https://studies.example.org); links are paths without it
    driver_python: str | None = None  # the Python that runs the driver on the head node; default this one
    max_body_bytes: int = 64 * 1024  # request bodies larger than this answer 413
    body_timeout_s: float = 10.0  # a request body that stops arriving for this long answers 408
    max_active_studies_per_owner: int = 4  # queued + running; more answer 429
    max_driver_attempts: int = 3  # a driver that dies is relaunched (resuming) this many times in all
    # Studies whose drivers run at once; more wait `queued` and start as others end. None: no limit, except on
    # embedded defaults (one machine shared with the API), where `actstudy serve` sets EMBEDDED_MAX_DRIVERS.
    max_running_studies: int | None = Field(None, ge=1)
    reconcile_interval_s: float = 5.0
    # Specs may name activations and models by import path (`package.module:name`) and bring a folder of code
    # (POST /api/v1/code, `actstudy submit --code DIR`), run with the service's rights on the cluster. Off: only the
    # registries, formulas and installed plugins.
    allow_user_code: bool = False
    max_code_bytes: int = 10 * 2**20  # an uploaded code archive (zip); it may unpack to 8× this

    @model_validator(mode="after")
    def _refuse_missing_secret(self) -> Settings:
        if self.environment != "development" and not self.admin_token:
            raise ValueError("ACTSTUDY_ADMIN_TOKEN must be set to a secret outside development")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'actstudy.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
