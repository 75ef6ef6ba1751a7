"""Deployable models: ONNX export with checked fusion (`bertc.export.onnx`) and quantization measured against the
parent (`bertc.export.quantize`, methods registered in `bertc.export.registry`). The predictors that run the
results live in `bertc.inference`.

Submodules are imported on use: onnx and torch are heavy, and `import bertc` must stay fast.
"""
