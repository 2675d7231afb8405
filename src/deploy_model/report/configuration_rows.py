"""The Configuration section of DEPLOYMENT.md: one row per choice that shapes serving, from the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_model.model.convert.record import conversion_phrase
from deploy_model.report.markdown import md, num


def cold_start_phrase(server: dict[str, Any] | None) -> str:
    """The cold start `serve` measured (server.json ready_seconds: process start to ready), or ''.
    What a request waits for when it wakes a scaled-to-zero service, before image pull and scheduling."""
    seconds = (server or {}).get("ready_seconds")
    if not isinstance(seconds, (int, float)):
        return ""
    return (f"measured cold start here: {seconds:.2f} s (process start to ready: model load and warm-up; a cluster adds "
            "scheduling and image pull)")


def configuration_rows(spec: Any, profile: dict[str, Any], server: dict[str, Any] | None,
                       quant: dict[str, Any] | None) -> list[tuple[str, str]]:
    s = spec
    pattern = {"realtime": f"Real-time {s.serving.protocol.value.upper()} (Open Inference Protocol v2 + /predict)",
               "batch": f"Batch (scheduled job, cron `{s.batch.schedule if s.batch else ''}`)",
               "event-driven": "Event-driven (message queue + workers)",
               "edge": "Edge (the model runs on the device)"}[s.serving.pattern.value]
    rollout = s.rollout.strategy.value
    if s.rollout.canary:
        rollout += f" via {s.rollout.canary.mechanism.value}, steps {', '.join(f'{w}%' for w in s.rollout.canary.steps)}"
    if s.rollout.shadow:
        rollout += f" via {s.rollout.shadow.mechanism.value}, sampling {s.rollout.shadow.sample_rate:.0%} of requests"
    rows = [
        ("Serving pattern", pattern),
        ("Target", f"{s.target.value}" + (f" {s.kubernetes.version}, namespace `{s.kubernetes.namespace}`" if s.target.value == "kubernetes" else "")),
        ("Rollout strategy", rollout),
        ("Model format", f"{s.model.format.upper()} ({_opsets(profile, s.model.opset)}, IR {profile.get('ir_version', 'n/a')})"
                         if not profile.get("conversion") else conversion_phrase(profile["conversion"])),
        ("Model", f"`{Path(s.model.path).name}` v{s.model.version}, {num(s.model.parameters)} parameters, "
                  f"{num(s.model.bytes)} bytes, sha256 `{s.model.sha256[:12]}`"),
        ("Signature", "; ".join(f"in `{t.name}` {t.dtype} {_shape(t.shape)}" for t in s.model.inputs) + "; "
                      + "; ".join(f"out `{t.name}` {t.dtype} {_shape(t.shape)}" for t in s.model.outputs)),
        ("Device (planned)", s.serving.device.value + (" with CPU fallback" if s.serving.allow_cpu_fallback else "")),
    ]
    if server:
        provider = server.get("provider") or (server.get("health") or {}).get("execution_provider") or "not reported"
        note = "; ".join(server.get("notes") or [])
        rows.append(("Provider actually used (measured run)", f"{provider}" + (f" ({note})" if note else "")))
    else:
        rows.append(("Provider actually used (measured run)", "no local server ran (see Measured results)"))
    b = s.batching
    rows.append(("Batching", f"dynamic, up to {b.max_batch_size} rows per batch, waiting at most {b.max_batch_delay_ms:g} ms, "
                             f"queue of {b.max_queue_size}" if b.enabled else "off (one request per inference)"))
    r = s.resources
    rows.append(("Resources per replica", f"CPU {r.cpu_request} request / {r.cpu_limit} limit, memory {r.memory_request} / "
                                          f"{r.memory_limit}" + (f", {r.gpu} GPU" if r.gpu else "")
                                          + (f"; {s.serving.workers} server processes (ONNXSERVE_WORKERS)"
                                             if s.serving.workers > 1 else "")))
    sc = s.scaling
    if s.serving.pattern.value == "event-driven":
        scaler = f"KEDA {sc.min_replicas}-{sc.max_replicas} workers on the request stream's consumer-group lag"
    else:
        scaler = f"HPA {sc.min_replicas}-{sc.max_replicas} at {sc.target_cpu_utilization}% CPU"
    rows.append(("Replicas / autoscaling", f"{sc.replicas} replica{'s' if sc.replicas != 1 else ''}; {scaler}"
                                           + (", scale to zero" if sc.scale_to_zero else "")
                                           + (f"; {cold_start_phrase(server)}" if cold_start_phrase(server)
                                              and (sc.scale_to_zero or s.target.value == "serverless") else "")))
    rows.append(("SLO", f"p95 <= {s.slo.latency_p95_ms:g} ms at {s.slo.target_rps:g} req/s, availability "
                        f"{s.slo.availability:g}%, errors <= {s.slo.max_error_ratio:.1%}"))
    if quant:
        rows.append(("Quantization", _quant_line(quant)))
    return [(k, md(v)) for k, v in rows]


def _opsets(profile: dict[str, Any], opset: Any) -> str:
    """'opset 17' or, per domain, 'opsets ai.onnx 17, ai.onnx.ml 3' (an ai.onnx.ml-only model has no default opset)."""
    imports = profile.get("opset_imports")
    if isinstance(imports, dict) and imports:
        if list(imports) == ["ai.onnx"]:
            return f"opset {imports['ai.onnx']}"
        return "opsets " + ", ".join(f"{domain} {version}" for domain, version in imports.items())
    return f"opset {opset}" if opset is not None else "opset not declared"


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _quant_line(quant: dict[str, Any]) -> str:
    q = quant
    parts = [str(q.get("method") or q.get("precision") or "quantized")]
    if q.get("verdict"):
        parts[0] += f": {q['verdict']}" + (f" ({q['reason']})" if q.get("reason") else "")
    if q.get("size_bytes_before") and q.get("size_bytes_after"):
        parts.append(f"size {q['size_bytes_before']:,} -> {q['size_bytes_after']:,} bytes")
    if q.get("speedup") is not None:
        parts.append(f"batch-1 speed x{q['speedup']:g}")
    if q.get("agreement") is not None:
        parts.append(f"top-1 agreement {q['agreement']:.1%}")
    if q.get("max_abs_diff") is not None:
        parts.append(f"max abs diff {q['max_abs_diff']:g}")
    return "; ".join(parts)
