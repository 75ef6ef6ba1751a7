"""bertc: make BERT-family text classifiers fast to serve."""

from bertc.artifact import load_artifact, load_model, load_tokenizer, read_manifest, save_artifact
from bertc.errors import BertcError

__version__ = "0.1.0"

__all__ = ["BertcError", "__version__", "evaluate", "finetune", "load_artifact", "load_model", "load_tokenizer",
           "predict", "read_manifest", "save_artifact"]


def __getattr__(name):
    # Heavy stages import lazily so `import bertc` and `bertc --help` stay fast.
    if name == "finetune":
        from bertc.finetune.finetune import finetune

        return finetune
    if name in ("evaluate", "predict"):
        from bertc import inference

        return getattr(inference, name)
    raise AttributeError(name)
