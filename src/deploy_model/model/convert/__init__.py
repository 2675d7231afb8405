"""Conversion of non-ONNX models to ONNX, each proved against the original framework."""
