"""The service: studies submitted over REST, stored, run as Ray jobs, followed and cancelled.

Its modules (imports flow down this list):

- `settings`    one `Settings` (ACTSTUDY_* variables), served by `get_settings()`
- `models`      the API's pydantic families (`StudyPublic`, `StudiesPublic`, `StudyResultsPublic`, ...)
- `auth`        bearer tokens (stored hashed), the admin token, `CurrentCaller`
- `jobs`        studies as Ray jobs (`JobLauncher`) and the reconciling of their states (`reconcile_one`)
- `reconciler`  the background task that reconciles every active study
- `api`         the routers, one per resource; `deps`, `errors`, `middleware`: what the app shares
- `main`        `create_app()`, assembling the above
- `client`      an HTTP client of the API (the CLI's and the demo's)
- `serve`, `cli`, `demo`: `actstudy serve`, the `actstudy` commands, `make demo`

Each loads on use (the CLI needs neither FastAPI nor Ray to submit a study).
"""

__all__ = ["api", "auth", "cli", "client", "demo", "deps", "errors", "jobs", "main", "middleware", "models", "reconciler", "serve",
           "settings"]
