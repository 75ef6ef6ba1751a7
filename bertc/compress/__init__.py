"""Architecture reduction: structural pruning by importance (`bertc prune`) and distillation (`bertc distill`).

Import from the modules: ``bertc.compress.prune`` (PruneConfig, prune, prune_model_), ``bertc.compress.distill``
(DistillConfig, distill), ``bertc.compress.importance`` (compute_importance), ``bertc.compress.flops``.
"""
