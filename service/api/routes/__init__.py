"""One `APIRouter` per resource: `studies` (submit, list, read, results, cancel), `activations` (the registry),
`health` (`/healthz`, `/readyz`)."""

__all__ = ["activations", "health", "studies"]
