"""Open Inference Protocol V2 over gRPC (`inference.GRPCInferenceService`) and `grpc.health.v1`.

The service runs in the same process and event loop as the REST app and calls the same
backend (batching engine, metrics, readiness), so both protocols share one model session and
one lifecycle.
"""
