"""bertc: make BERT-family text classifiers fast to serve.

The public names are imported on first use, so `import bertc` (and `bertc --help`) does not import torch.
"""

from bertc.errors import BertcError

__version__ = "0.1.0"

PUBLIC = {
    "evaluate": "bertc.inference.evaluation", "predict": "bertc.inference.evaluation",
    "finetune": "bertc.finetune.finetune",
    "load_artifact": "bertc.torch_artifact", "load_model": "bertc.torch_artifact", "load_tokenizer": "bertc.artifact",
    "read_manifest": "bertc.artifact", "save_artifact": "bertc.torch_artifact",
}
__all__ = ["BertcError", "__version__", *PUBLIC]


def __getattr__(name):
    if name not in PUBLIC:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(PUBLIC[name]), name)
