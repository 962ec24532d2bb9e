"""Validation errors as people read them: `field.path: reason`, one per error. Pydantic's errors and the
API's 422 `detail` share the shape ({"loc": [...], "msg": ...})."""

from __future__ import annotations

from collections.abc import Iterable


def describe(errors: Iterable[dict], whole: str = "") -> list[str]:
    """One line per error; `whole` names an error about the whole document (an empty `loc`)."""
    return [f"{'.'.join(str(p) for p in e.get('loc', ())) or whole}: {e.get('msg')}" for e in errors]
