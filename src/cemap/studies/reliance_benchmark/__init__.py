"""The reliance benchmark (issue 25): cemap's audit against every attribution method on planted spurious signals.

For each planted artifact and training seed, a *spurious* cxr-cnn (the artifact tied to Nodule) and a *normal* one
(the artifact independent of the labels) are trained on synthcxr at 64 px, their reliance verified by intervention
(:mod:`.models`), then audited blind (:mod:`cemap.studies.audit`), audited and TCAV-tested with the artifact known,
and explained by every attribution method (:mod:`.attributions`, :mod:`.tcav`); :mod:`.scoring` turns the records into
detection and false-alarm rates with thresholds chosen on calibration seeds only. Records are saved per (artifact,
seed) under ``out/pairs`` so an interrupted run resumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...cache import save_json_atomic
from .config import RelianceBenchmarkConfig
from .scoring import adebayo_table, calibrate, exclusions, summary, verification_table

__all__ = ["RelianceBenchmarkConfig", "RelianceBenchmarkResult", "run_reliance_benchmark"]


@dataclass
class RelianceBenchmarkResult:
    config: dict
    calibration: dict
    summary: list[dict]
    adebayo: list[dict]
    models: list[dict]
    exclusions: dict
    command: str = ""
    timings_s: dict = field(default_factory=dict)

    def row(self, artifact: str, method: str) -> dict | None:
        return next((r for r in self.summary if r["artifact"] == artifact and r["method"] == method), None)

    def headline(self) -> list[dict]:
        from .claims import benchmark_claims

        return benchmark_claims(self)

    def to_json(self) -> dict:
        return {
            "command": self.command,
            "config": self.config,
            "headline": self.headline(),
            "calibration": self.calibration,
            "summary": self.summary,
            "adebayo": self.adebayo,
            "models": self.models,
            "exclusions": self.exclusions,
            "timings_s": self.timings_s,
        }


def run_reliance_benchmark(
    cfg: RelianceBenchmarkConfig, out: Path, command: str = "", log=print
) -> RelianceBenchmarkResult:
    """Run (or resume) every (artifact, seed) pair, then score them; writes ``out/reliance_benchmark.json``."""
    from .pairs import run_pair

    out, start, records = Path(out), time.perf_counter(), []
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    for seed in cfg.seeds:
        for artifact in cfg.artifacts:
            path = out / "pairs" / f"{artifact}-{seed}.json"
            if path.exists():
                records.append(json.loads(path.read_text()))
                continue
            t = time.perf_counter()
            records.append(run_pair(cfg, artifact, seed))
            save_json_atomic(records[-1], path)
            log(f"{artifact} seed {seed} ({cfg.role(seed)}): {time.perf_counter() - t:.0f} s")
    rule = calibrate(records, cfg.methods, cfg.max_false_alarm)
    result = RelianceBenchmarkResult(
        cfg.to_json(),
        rule,
        summary(records, cfg.methods, rule, cfg.artifacts),
        adebayo_table(records, cfg.methods, cfg.artifacts),
        verification_table(records),
        exclusions(records),
        command,
        {"total": round(time.perf_counter() - start, 1)},
    )
    save_json_atomic(result.to_json(), out / "reliance_benchmark.json")
    return result
