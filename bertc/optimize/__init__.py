"""`bertc optimize` (search for the fastest model within an accuracy budget) and `bertc run` (replay a recipe).

Import from the modules: `bertc.optimize.config` (OptimizeConfig), `bertc.optimize.optimize` (optimize),
`bertc.optimize.recipe` (read_recipe, run_recipe, write_recipe).
"""
