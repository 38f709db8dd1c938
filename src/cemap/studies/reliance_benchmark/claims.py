"""The benchmark's headline in words: the audit against the best attribution method, per artifact kind."""

from __future__ import annotations

from .scoring import AUDIT, AUDIT_KNOWN, NON_VISIBLE, TCAV

BLINDED_PEERS_EXCLUDE = (AUDIT, AUDIT_KNOWN, TCAV)


def _r(x: dict) -> str:
    return f"{x['estimate']:.2f} [{x['low']:.2f}, {x['high']:.2f}]"


def _best_peer(result, artifact: str) -> dict | None:
    peers = [r for r in result.summary if r["artifact"] == artifact and r["method"] not in BLINDED_PEERS_EXCLUDE and r["n_spurious"]]
    return max(peers, key=lambda r: r["detection_rate"]["estimate"] - r["false_alarm_rate"]["estimate"], default=None)


def _claim(result, artifact: str, label: str | None = None) -> dict | None:
    audit, peer = result.row(artifact, AUDIT), _best_peer(result, artifact)
    if audit is None or peer is None or not audit["n_spurious"]:
        return None
    gap = audit["detection_rate"]["estimate"] - peer["detection_rate"]["estimate"]
    text = (f"{label or artifact}: the blinded audit detects {_r(audit['detection_rate'])} of {audit['n_spurious']} verified spurious models "
            f"with false alarms on {_r(audit['false_alarm_rate'])} of {audit['n_normal']} normal ones; the best attribution method "
            f"({peer['method']}) detects {_r(peer['detection_rate'])} with false alarms {_r(peer['false_alarm_rate'])} "
            f"(difference in detection {gap:+.2f}).")
    return {"claim": text, "numbers": {"audit": audit, "best_attribution": peer, "detection_difference": round(gap, 4)}}


def benchmark_claims(result) -> list[dict]:
    arts = result.config["artifacts"]
    pooled = "non-visible (blur, contrast, noise)"
    out = [_claim(result, pooled, "Non-visible artifacts (blur, contrast, noise) pooled")]
    out += [_claim(result, a) for a in arts]
    return [c for c in out if c is not None]
