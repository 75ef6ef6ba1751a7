"""Architecture reduction: structural pruning by importance (`bertc prune`) and distillation (`bertc distill`).

Import from the modules: ``bertc.compress.prune`` (prune, prune_, prune_model_), ``bertc.compress.distill``
(distill), ``bertc.compress.distillation`` (distill_ and its loss), ``bertc.compress.config`` (PruneConfig,
DistillConfig, DistillLoss), ``bertc.compress.importance`` (compute_importance), ``bertc.compress.selection``
(what a pruning step keeps), ``bertc.compress.flops``.
"""
