"""Deployable models: ONNX export with checked fusion (`bertc.export.onnx`), quantization measured against the
parent (`bertc.export.quantize`), and the ONNX Runtime predictor (`bertc.export.runtime`).

Submodules are imported on use: onnxruntime and onnx are heavy, and `import bertc` must stay fast.
"""
