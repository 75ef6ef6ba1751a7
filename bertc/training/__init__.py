"""The one training loop (a transformers Trainer with bertc's options, checkpoints and logs), shared by fine-tuning,
pruning recovery and distillation.

``bertc.training.trainer`` (train_model, check_device), ``bertc.training.optim`` (optimizers and schedules),
``bertc.training.callbacks``, ``bertc.training.workdir`` (work directories and ``--resume``), and
``bertc.training.config`` (TrainConfig).
"""
