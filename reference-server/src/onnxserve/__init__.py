"""onnxserve: the reference ONNX model server of yzmir-ml-production.

Start it with ``python -m onnxserve --model model.onnx`` (see ``--help``). Python API:
``onnxserve.settings.load_settings`` / ``Settings`` and ``onnxserve.server.build_app``.
"""

__version__ = "0.1.0"
