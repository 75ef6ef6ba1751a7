"""Fine-tuning: the `bertc finetune` stage (`bertc.finetune.finetune`) and its options (`bertc.finetune.config`)."""
