"""The plan's payload logging switch: answers.yaml `payload_logging: {enabled, sampling, sink}`."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

FILE_SINK = "file"
LOG_DIR = "/var/log/payloads"  # where the file sink's volume is mounted in the server container
_SECRET = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SCHEMES = ("http://", "https://", "s3://", "gs://", "az://")


class PayloadLogging(BaseModel):
    """Sampled request/response records from the server (onnxserve --payload-log-*), off by default."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(False, description="log a sample of requests and answers")
    sampling: float = Field(1.0, ge=0, le=1, description="fraction of requests logged")
    sink: str = Field(FILE_SINK, description="file (JSON Lines on a volume), an http(s):// CloudEvents "
                      "endpoint, or s3:// / gs:// / az:// object storage")
    volume_claim: str | None = Field(None, description="file sink: an existing ReadWriteMany PVC (default: an emptyDir)")
    max_file_mb: int = Field(100, ge=1, le=10240, description="file sink: a file is rotated at this size")
    backups: int = Field(5, ge=0, le=100, description="file sink: rotated files kept per pod")
    credentials_secret: str | None = Field(
        None, description="Secret whose keys become the server's env: AWS_* for s3://, "
        "ONNXSERVE_PAYLOAD_LOG_AUTHORIZATION for an HTTP sink")

    @field_validator("sink")
    @classmethod
    def _sink(cls, value: str) -> str:
        if value != FILE_SINK and not value.startswith(_SCHEMES):
            raise ValueError(f"payload_logging.sink {value!r}: expected 'file' or a URL starting with "
                             f"{', '.join(_SCHEMES)}")
        return value

    @field_validator("volume_claim", "credentials_secret")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes object name (lowercase letters, digits, '-', '.')")
        return value

    def server_env(self) -> dict[str, str]:
        """The ONNXSERVE_PAYLOAD_LOG_* variables of the server container (none when off)."""
        if not self.enabled:
            return {}
        env = {
            "ONNXSERVE_PAYLOAD_LOG_SINK": LOG_DIR if self.sink == FILE_SINK else self.sink,
            "ONNXSERVE_PAYLOAD_LOG_SAMPLING": f"{self.sampling:g}",
        }
        if self.sink == FILE_SINK:
            env["ONNXSERVE_PAYLOAD_LOG_MAX_FILE_BYTES"] = str(self.max_file_mb << 20)
            env["ONNXSERVE_PAYLOAD_LOG_BACKUPS"] = str(self.backups)
        return env

    def volume_mib(self) -> int:
        """emptyDir size limit of the file sink: every file it may keep, and a rotation's slack."""
        return (self.backups + 2) * self.max_file_mb
