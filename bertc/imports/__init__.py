"""Fine-tuned transformers classifiers bertc did not make (a local directory or a Hub id) as bertc artifacts.

``bertc.imports.source`` checks and loads such a model (every stage reading a PyTorch artifact accepts one through
``bertc.torch_artifact.load_artifact``); ``bertc.imports.classifier`` is the `bertc import` stage; options live in
``bertc.imports.config``.
"""
