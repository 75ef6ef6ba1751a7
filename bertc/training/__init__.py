"""The one training loop (a transformers Trainer with bertc's options, checkpoints and logs), shared by fine-tuning,
pruning recovery and distillation."""
