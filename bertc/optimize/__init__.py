"""`bertc optimize` (search for the fastest model within an accuracy budget) and `bertc run` (replay a recipe).

Import from the modules: `bertc.optimize.config` (OptimizeConfig, SelectConfig), `bertc.optimize.optimize`
(optimize), `bertc.optimize.recipe` (STAGES, read_recipe, run_recipe, write_recipe), `bertc.optimize.rundir` (the
output directory and its state).
"""
