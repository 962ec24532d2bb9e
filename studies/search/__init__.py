"""Phase 1, the search: each activation's lr and l2 tuned by its own Optuna study, run on Ray Tune.

- `open_storage`, `on_storage`: where the search lives (a journal file, or beside the records database)
  and the retry policy for calls on it;
- `make_sampler`, `search_space`: each activation's seeded sampler and the space every activation shares;
- `PerActivationSearcher`, `PerActivationScheduler`, `make_scheduler`: Tune's searcher and pruning, kept
  apart per activation;
- `run_search`: the phase itself.

A study's search can be browsed with Optuna's own dashboard (docs/reliability.md says how).
"""

from studies.search._phase import run_search
from studies.search._samplers import activation_seed, make_sampler, search_space
from studies.search._scheduler import PerActivationScheduler, make_scheduler
from studies.search._searcher import METRIC, MODE, OUTCOME, PerActivationSearcher, trial_key
from studies.search._storage import OPTUNA_SCHEMA, STORAGE_ATTEMPTS, on_storage, open_storage

__all__ = ["METRIC", "MODE", "OPTUNA_SCHEMA", "OUTCOME", "STORAGE_ATTEMPTS", "PerActivationScheduler", "PerActivationSearcher",
           "activation_seed", "make_sampler", "make_scheduler", "on_storage", "open_storage", "run_search", "search_space",
           "trial_key"]
