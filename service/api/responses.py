"""The error answers the routes document (each a `Message`), in one table so the OpenAPI schema says them all alike."""

from __future__ import annotations

from service.models import Message

ERRORS = {
    400: "a body that cannot be read as JSON text (not UTF-8)",
    401: "no bearer token, or one that is not known",
    404: "no such study, or another owner's",
    409: "the study is not in a state that allows this",
    413: "request body over the service's limit (ACTSTUDY_MAX_BODY_BYTES, 64 KiB by default)",
    429: "the owner already has the most queued or running studies allowed (ACTSTUDY_MAX_ACTIVE_STUDIES_PER_OWNER)",
    503: "the study was stored but the Ray cluster could not start it (it is marked failed)",
}


def documented(*codes: int) -> dict:
    return {code: {"model": Message, "description": ERRORS[code]} for code in codes}
