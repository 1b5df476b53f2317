"""`qc bench edge`: the full edge pipeline's throughput, latency and memory, as ratios in one run.

Everything real: synthetic 1280x1024 grey frames (pre-rendered, so rendering is not
timed), ROI crop + resize, onnxruntime inference, the decision, a simulated actuator,
and review items through the outbox to a private mosquitto and back as acks from a
review consumer. Phases:

1. as fast as it can (the line waits for the pipeline): ``parts_per_s``;
2. the same model alone on the same preprocessed input in the same process:
   ``raw_model_parts_per_s`` (the limit) and ``ratio`` = 1 / 2;
3. a fixed rate (default 100 parts/s): trigger-to-decision ``latency_ms_p50/p99``.

``uninspected`` counts parts that got no model decision (fail-safe or none at all);
it must be 0. ``rss_mb`` is the process's peak resident memory.
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import (
    DecisionSection,
    EdgeConfig,
    EdgeSection,
    MetricsSection,
    ModelSection,
    MqttSection,
    OutboxSection,
)
from edge.decision import Decision
from edge.service import EdgeService
from hardware.actuators import SimulatedActuator
from hardware.cameras import SyntheticCamera
from hardware.synthetic import PartGenerator
from hardware.triggers import SoftwareTrigger
from models import builtin
from models.manifest import load_manifest
from models.registry import Registry
from qc.broker import MosquittoBroker
from qc.reviewsink import ReviewSink


def run(model_dir: Path | None = None, parts: int = 3000, rate_hz: float = 100.0, rate_parts: int = 1000,
        prerender: int = 24, audit_rate: float = 0.01, progress: bool = True) -> dict[str, Any]:
    say = (lambda msg: print(f"bench edge: {msg}", file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    work = Path(tempfile.mkdtemp(prefix="qc-bench-edge-"))
    registry = Registry(work / "models")
    version = _install_model(registry, model_dir)
    say(f"model {version}; pre-rendering {prerender} frames of 1280x1024")
    generator = PartGenerator(seed=7, width=1280, height=1024)
    camera = SyntheticCamera(generator, prerender=prerender)
    broker = MosquittoBroker(work / "broker").start()
    sink = ReviewSink(broker.host, broker.port).start()
    base = EdgeConfig(
        edge=EdgeSection(line="bench", camera="cam1", data_dir=work / "edge"),
        model=ModelSection(registry=registry.root, seed_builtin=False),
        decision=DecisionSection(audit_rate=audit_rate, seed=1, deadline_ms=50.0),
        outbox=OutboxSection(resend_after_s=5.0),
        mqtt=MqttSection(host=broker.host, port=broker.port, status_every_s=1.0),
        metrics=MetricsSection(port=0),
    )
    try:
        say(f"phase 1: {parts} parts as fast as the pipeline goes")
        fast = _phase(base, camera, SoftwareTrigger(0.0), parts, backpressure=True)
        say(f"phase 1: {fast['parts_per_s']:.0f} parts/s")
        say("phase 2: the model alone on the same input")
        raw = _raw_model_rate(fast["service"], camera, parts)
        say(f"phase 2: {raw:.0f} parts/s")
        say(f"phase 3: {rate_parts} parts at {rate_hz:.0f} parts/s")
        paced = _phase(base, camera, SoftwareTrigger(rate_hz), rate_parts, backpressure=False)
        lat = np.array(paced["latencies"]) * 1000.0
        reviews = fast["reviews"] | paced["reviews"]
        delivered = sink.wait_for(reviews, timeout=30)
        result = {
            "parts_per_s": round(fast["parts_per_s"], 1),
            "raw_model_parts_per_s": round(raw, 1),
            "ratio": round(fast["parts_per_s"] / raw, 3),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 3),
            "rate_hz": rate_hz,
            "parts": parts + rate_parts,
            "uninspected": fast["uninspected"] + paced["uninspected"],
            "fail_safe": fast["fail_safe"] + paced["fail_safe"],
            "reviews_sent": len(reviews),
            "reviews_delivered": len(reviews & sink.stored),
            "reviews_dropped": fast["reviews_dropped"] + paced["reviews_dropped"],
            "review_share": round(len(reviews) / (parts + rate_parts), 4),
            "all_reviews_delivered": delivered,
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "model": version,
            "frame": "1280x1024 grey",
        }
    finally:
        sink.stop()
        broker.stop()
        camera.close()
    return result


def _install_model(registry: Registry, model_dir: Path | None) -> str:
    if model_dir is None:
        return builtin.install_into(registry)
    manifest = load_manifest(model_dir / "manifest.json")
    registry.add(manifest, (model_dir / manifest.file).read_bytes())
    registry.set_current(manifest.version, reason="benchmark")
    return manifest.version


def _phase(base: EdgeConfig, camera: SyntheticCamera, trigger: SoftwareTrigger, parts: int,
           backpressure: bool) -> dict[str, Any]:
    cfg = replace(base, edge=replace(base.edge, data_dir=base.edge.data_dir / f"phase-{time.monotonic_ns()}"))
    if backpressure:
        # The line waits for the pipeline here, so a deep frame queue would only age frames
        # past the deadline; two keep inference busy.
        cfg = replace(cfg, decision=replace(cfg.decision, queue_size=2))
    actuator = SimulatedActuator()
    service = EdgeService(cfg, camera=camera, trigger=trigger, actuator=actuator, max_parts=parts,
                          backpressure=backpressure)
    decisions: list[Decision] = []
    reviews: set[str] = set()
    service.pipeline.listeners.append(decisions.append)
    service.pipeline.review_listeners.append(lambda header: reviews.add(header.id))
    t0 = time.perf_counter()
    service.start()
    service.pipeline.wait()
    elapsed = time.perf_counter() - t0
    service.pipeline.stop()
    _drain_outbox(service)
    service.stop()
    trigger.close()
    decided_parts = {d.part_id for d in decisions}
    fail_safe = sum(1 for d in decisions if d.fail_safe)
    return {
        "service": service,
        "parts_per_s": len(decisions) / elapsed,
        "latencies": [d.latency_s for d in decisions],
        "uninspected": (parts - len(decided_parts)) + fail_safe,
        "fail_safe": fail_safe,
        "reviews": reviews,
        "reviews_dropped": service.pipeline.reviews_dropped,
    }


def _drain_outbox(service: EdgeService, timeout: float = 20.0) -> None:
    """Give the sender time to deliver this phase's reviews before the service stops."""
    deadline = time.monotonic() + timeout
    while service.outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.05)


def _raw_model_rate(service: EdgeService, camera: SyntheticCamera, parts: int) -> float:
    detector = service.pipeline.detector
    tensor = detector.preprocess(camera.capture("raw-0").image)
    detector.infer(tensor)
    t0 = time.perf_counter()
    for _ in range(parts):
        detector.infer(tensor)
    return parts / (time.perf_counter() - t0)


def main_json(args: Any) -> int:
    result = run(model_dir=args.model, parts=args.parts, rate_hz=args.rate, rate_parts=args.rate_parts,
                 progress=not args.quiet)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0 if result["uninspected"] == 0 else 1
