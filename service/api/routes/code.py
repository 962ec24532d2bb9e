"""/api/v1/code: upload a folder of your code (a zip archive) for studies to run (`actstudy submit --code DIR`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from service.api.responses import documented
from service.auth import CurrentCaller
from service.code import CodeError, store_archive
from service.deps import SettingsDep
from service.models import FieldErrors, Message
from studies.spec import USER_CODE_OFF

router = APIRouter(prefix="/code", tags=["code"])



class CodePublic(BaseModel):
    code: str = Field(description="the archive's sha256: put it in a spec's `code` to run the study with these files")
    files: int
    bytes: int = Field(description="unpacked")


@router.post("", status_code=201, response_model=CodePublic, summary="Upload your code (a zip archive) for a study",
             responses={**documented(401), 413: {"model": Message, "description": "an archive over ACTSTUDY_MAX_CODE_BYTES (10 MiB by default)"},
                        422: {"model": FieldErrors, "description": "user code is off, or the archive is refused (why)"}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_code(request: Request, caller: CurrentCaller, settings: SettingsDep) -> CodePublic:
    """The archive is unpacked on the service and given to the study's driver and trials as Ray's `working_dir`, so
    `package.module:build` in the spec imports from it. Off unless the administrator allows user code (422)."""
    if not settings.allow_user_code:
        raise RequestValidationError([{"loc": ("body",), "type": "value_error", "msg": USER_CODE_OFF}])
    try:
        stored = store_archive(settings.data_dir, await request.body(), settings.max_code_bytes)
    except CodeError as exc:
        raise RequestValidationError([{"loc": ("body",), "type": "value_error", "msg": str(exc)}]) from None
    return CodePublic(code=stored.sha256, files=stored.files, bytes=stored.bytes)
