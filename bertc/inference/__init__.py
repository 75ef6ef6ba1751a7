"""Running any bertc artifact on texts: predictors for every model kind, evaluation and prediction.

`bertc.inference.evaluation` (evaluate, predict, score_dataset) runs artifacts through the predictor the
registry (`bertc.inference.registry`) picks by the manifest's ``model.kind``: PyTorch (`pytorch`), ONNX Runtime
(`onnx`), PyTorch dynamic int8 (`torch_quantized`) or OpenVINO (`openvino`, with the optional extra). Importing
the package, the registry or the ONNX predictor imports neither torch nor pandas: a bench child process measuring
an ONNX model's memory loads only its runtime.
"""
