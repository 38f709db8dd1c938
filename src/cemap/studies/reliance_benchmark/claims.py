"""The benchmark's headline in words: the blinded audit against the best attribution method, per artifact kind."""

from __future__ import annotations

from .scoring import AUDIT, CORRELATED

POOLED = "non-visible (blur, contrast, noise)"


def _r(x: dict) -> str:
    return f"{x['estimate']:.2f} [{x['low']:.2f}, {x['high']:.2f}]"


def _best_peer(result, artifact: str, suffix: str) -> dict | None:
    """The attribution method with the best detection minus false alarm (point estimates) on this artifact."""
    names = {m + suffix for m in result.config["methods"]}
    peers = [r for r in result.summary if r["artifact"] == artifact and r["method"] in names and r["n_spurious"]]
    return max(peers, key=lambda r: r["detection_rate"]["estimate"] - r["false_alarm_rate"]["estimate"], default=None)


def _claim(result, artifact: str, suffix: str = "") -> dict | None:
    audit, peer = result.row(artifact, AUDIT + suffix), _best_peer(result, artifact, suffix)
    if audit is None or peer is None or not audit["n_spurious"]:
        return None
    gap = audit["detection_rate"]["estimate"] - peer["detection_rate"]["estimate"]
    where = " (held-out images where the artifact follows Nodule)" if suffix else ""
    text = (
        f"{artifact}{where}: the blinded audit detects {_r(audit['detection_rate'])} of {audit['n_spurious']} "
        "verified spurious models "
        f"with false alarms on {_r(audit['false_alarm_rate'])} of {audit['n_normal']} normal ones; the best "
        "attribution method "
        f"({peer['method'].replace(CORRELATED, '')}) detects {_r(peer['detection_rate'])} with false alarms "
        f"{_r(peer['false_alarm_rate'])} "
        f"(difference in detection {gap:+.2f})."
    )
    return {"claim": text, "numbers": {"audit": audit, "best_attribution": peer, "detection_difference": round(gap, 4)}}


def benchmark_claims(result) -> list[dict]:
    arts = [POOLED, *result.config["artifacts"]]
    out = [_claim(result, a) for a in arts] + [_claim(result, POOLED, CORRELATED)]
    return [c for c in out if c is not None]
