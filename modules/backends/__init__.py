"""Execution backends (torch, onnxruntime, openvino, tensorrt) for a loaded model; see :mod:`.base`."""
