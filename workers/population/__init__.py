"""Populations: many configurations of one model and activation trained as one batched computation."""

from workers.population._halving import REDUCTION_FACTOR, SuccessiveHalving, rungs
from workers.population._members import Members, Unbatchable, population_loss
from workers.population._optim import PopulationAdam, PopulationOptimizer
from workers.population._train import train_population
from workers.population._trial import run_population

__all__ = ["REDUCTION_FACTOR", "Members", "PopulationAdam", "PopulationOptimizer", "SuccessiveHalving", "Unbatchable",
           "population_loss", "rungs", "run_population", "train_population"]
