"""What a study's driver reads from its environment, in one place (the service passes these to its Ray jobs;
`actstudy run` takes them as defaults for its options)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DriverSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACTSTUDY_", extra="ignore", populate_by_name=True)

    # The records database: its URL, or a file holding it (how the service passes it: Ray writes a job's
    # environment to its logs, and the URL may hold a password).
    database_url: str | None = None
    database_url_file: Path | None = None
    mlflow_uri: str | None = Field(None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "ACTSTUDY_MLFLOW_URI"))
    mlflow_public_url: str | None = None  # how users reach the MLflow UI, if not at mlflow_uri
    data_dir: Path = Path(".actstudy")  # studies' folders (checkpoints, Tune's own files) go to <data_dir>/studies
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS", "ACTSTUDY_RAY_ADDRESS"))
    allow_user_code: bool = False  # activations by import path, as the service that launched the driver allows

    def records_url(self) -> str | None:
        if self.database_url:
            return self.database_url
        return self.database_url_file.read_text().strip() if self.database_url_file else None

    @property
    def studies_dir(self) -> Path:
        return self.data_dir / "studies"
