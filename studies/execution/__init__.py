"""What both phases of a study share: the Ray cluster (connecting, what it holds), the study's folders and a
fresh Tune experiment per phase, and progress reported as trials end (`ProgressSink`, `ProgressCallback`)."""

from studies.execution._cluster import (
    DRIVER_ENV,
    DRIVER_LOG_LEVELS,
    TRIAL_ENV,
    UnplaceableTrials,
    check_placeable,
    cluster_slots,
    driver_settings,
    ensure_ray,
)
from studies.execution._context import TRIAL_RETRIES, StudyContext, StudyPaths
from studies.execution._progress import SINKS, ProgressCallback, ProgressSink, emit, phase_progress

__all__ = ["DRIVER_ENV", "DRIVER_LOG_LEVELS", "SINKS", "TRIAL_ENV", "TRIAL_RETRIES", "ProgressCallback", "ProgressSink", "StudyContext", "StudyPaths",
           "UnplaceableTrials", "check_placeable", "cluster_slots", "driver_settings", "emit", "ensure_ray", "phase_progress"]
