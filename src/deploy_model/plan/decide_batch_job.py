"""Decide the scheduled batch Job: its shards, where it reads and writes, and the storage credentials."""

from __future__ import annotations

from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.spec import Answers, BatchJob


def decide_batch_job(log: DecisionLog, answers: Answers, name: str) -> BatchJob:
    a = answers
    remote = [u for u in (a.batch_input, a.batch_output) if "://" in u]
    secret = (a.batch_credentials_secret or f"{name}-storage") if remote else None
    on_volume = len(remote) < 2
    if a.batch_parallelism > 1:
        log.decide("batch_parallelism", a.batch_parallelism,
                   f"an Indexed Job of {a.batch_parallelism} pods: pod i scores shard i of N into the same output, "
                   "each with its own journal, so a retried index resumes"
                   + (" (the data volume is ReadWriteMany: pods on several nodes mount it)" if on_volume else ""))
    if secret:
        log.decide("batch_credentials_secret", secret,
                   f"{', '.join(remote)} on object storage: credentials come from the Secret {secret} (create it "
                   "before the first run; its keys become the pod's environment)")
    return BatchJob(schedule=a.batch_schedule, input_uri=a.batch_input, output_uri=a.batch_output,
                    parallelism=a.batch_parallelism, credentials_secret=secret, volume=on_volume)
