"""The embedded stack's processes on one machine: an `mlflow server` on SQLite (`start_mlflow`) and a Ray head
(`start_ray_head`, `RayHead`), each on its own free ports, waited for until it answers and stopped cleanly.
`actstudy run`, `actstudy serve`, the demo and the tests use them."""

from studies.local._ports import free_port
from studies.local._ray_head import HEAD_MARK, RayHead, start_ray_head
from studies.local._services import (
    SERVICE_SECRETS,
    NotReady,
    Service,
    child_env,
    executable,
    lower_session_priority,
    mlflow_db,
    start_mlflow,
    stop_process_group,
    wait_http,
)

__all__ = ["HEAD_MARK", "SERVICE_SECRETS", "NotReady", "RayHead", "Service", "child_env", "executable", "free_port",
           "lower_session_priority", "mlflow_db", "start_mlflow", "start_ray_head", "stop_process_group", "wait_http"]
