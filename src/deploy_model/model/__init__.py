"""The model: recognise its format, profile it (inspect), its inputs (samples, synthetic), INT8 (quantize), the user's request."""
