"""Event-driven inference: a Redis Streams consumer-group worker (`python -m onnxserve.worker`).

Requests arrive on a stream, are scored in batches with onnxruntime, and each result is written
to a result stream in the same atomic step that acknowledges the request, so a worker killed at
any moment loses nothing and answers nothing twice; its pending entries are claimed by another
worker after an idle timeout, and a message that keeps failing goes to a dead-letter stream.
"""
