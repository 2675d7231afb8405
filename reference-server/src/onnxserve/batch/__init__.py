"""Batch inference over files: python -m onnxserve.batch --model M --input IN --output OUT.

Streams .npy/.npz/.parquet/.csv/.jsonl input through onnxruntime in batches and writes the
predictions in shards, each committed atomically and recorded in a manifest, so a run killed at
any moment resumes where it stopped and every input row ends up exactly once in the output or in
the rejects. The rendered Kubernetes Job/CronJob and the Prefect flow run this module.
"""

from .errors import BatchError
from .runner import BatchOptions, run_batch

__all__ = ["BatchError", "BatchOptions", "run_batch"]
