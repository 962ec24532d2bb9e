"""Populations: many configurations of one model and activation trained as one batched computation."""

from workers.population._adam import PopulationAdam
from workers.population._members import Members, population_loss
from workers.population._train import train_population

__all__ = ["Members", "PopulationAdam", "population_loss", "train_population"]
