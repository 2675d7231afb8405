"""Measurement of a running server: serve it locally, smoke-test it, load-test it (chart, wrk), the trial of batch and streaming."""
