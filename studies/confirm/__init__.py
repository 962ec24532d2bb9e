"""Phase 2, confirmation: each activation's best setting re-trained with the study's shared seeds and scored
on test data (`run_confirm`), one `ConfirmCell` per activation and seed."""

from studies.confirm._phase import confirm_cells, confirm_key, run_confirm

__all__ = ["confirm_cells", "confirm_key", "run_confirm"]
