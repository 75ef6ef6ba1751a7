"""`bertc optimize` (search for the fastest model within an accuracy budget) and `bertc run` (replay a recipe)."""

from bertc.optimize.config import OptimizeConfig, SelectConfig
from bertc.optimize.optimize import optimize
from bertc.optimize.recipe import read_recipe, run_recipe, write_recipe

__all__ = ["OptimizeConfig", "SelectConfig", "optimize", "read_recipe", "run_recipe", "write_recipe"]
