"""What a study is and what it reports: the spec (pydantic, from YAML or JSON, with its limits), the typed
status, progress and results, and validation errors worded for people (`describe`)."""

from studies.spec._errors import describe
from studies.spec._formula import Curve, FormulaCheck, FormulaFinding, FormulaRequest, check_formula_request
from studies.spec._results import (
    ActivationProgress,
    ActivationResult,
    BestParams,
    ConfirmCell,
    MlflowLinks,
    PairedTest,
    Phase,
    PhaseProgress,
    RunLink,
    StudyOutcome,
    StudyProgress,
    StudyResults,
    StudyStatus,
    Summary,
    TrialCounts,
    TrialStatus,
    TrialSummary,
    outcome,
)
from studies.spec._spec import (
    MAX_ACTIVATIONS,
    MAX_SEEDS,
    MAX_TRIAL_EPOCHS,
    MAX_TRIALS,
    USER_CODE_OFF,
    ActivationSpec,
    ConfirmSpec,
    DatasetSpec,
    ModelSpec,
    RangeSpec,
    ResourcesSpec,
    SearchSpec,
    SpecError,
    StudySpec,
    TrainingSpec,
    allow_user_code,
    check_parameters,
    confine_data,
    load_spec,
    parameters_model,
    parse_spec,
    read_data_here,
)

__all__ = [
    "MAX_ACTIVATIONS", "MAX_SEEDS", "MAX_TRIALS", "MAX_TRIAL_EPOCHS", "ActivationProgress", "ActivationResult",
    "ActivationSpec", "BestParams", "ConfirmCell", "Curve", "FormulaCheck", "FormulaFinding", "FormulaRequest",
    "ConfirmSpec", "DatasetSpec", "MlflowLinks", "ModelSpec", "PairedTest", "Phase", "PhaseProgress", "RangeSpec",
    "ResourcesSpec", "RunLink", "SearchSpec", "SpecError", "StudyOutcome", "StudyProgress", "StudyResults",
    "StudySpec", "StudyStatus", "Summary", "TrainingSpec", "USER_CODE_OFF", "allow_user_code", "confine_data",
    "TrialCounts", "TrialStatus", "TrialSummary", "check_formula_request", "check_parameters", "describe",
    "load_spec", "outcome", "parameters_model", "parse_spec", "read_data_here",
]
