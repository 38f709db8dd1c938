"""The audit's claims in words, each with its numbers (what ``AuditResult.headline()`` returns)."""

from __future__ import annotations

from .effects import Effect

MOVES = 0.05  # a latent channel "moves" a finding when its mean effect's lower bound exceeds this


def _fmt(e: Effect) -> str:
    i, d = e.effect, e.decision_change
    return (f"{e.label} changes the probability of {e.finding} by {i.estimate:.3f} [{i.low:.3f}, {i.high:.3f}] on average "
            f"and its decision in {100 * d.estimate:.0f}% [{100 * d.low:.0f}, {100 * d.high:.0f}] of images")


def _verdict(result) -> dict:
    e = result.concern_effect
    if e is None:
        return {"claim": "No intervention that leaves the findings intact could be scored, so the audit gives no verdict.", "numbers": {}}
    numbers = {"concern": round(result.concern, 4), "threshold": result.threshold, "effect": e.to_json()}
    if result.flagged:
        text = (f"The audit flags this model as relying on something other than the findings: {_fmt(e)} while leaving the findings "
                f"intact (lower bound {result.concern:.3f} > the rule's threshold {result.threshold:.3f}).")
    else:
        text = (f"The audit does not flag this model: the largest effect of an intervention that leaves the findings intact is {_fmt(e)} "
                f"(lower bound {result.concern:.3f} <= the rule's threshold {result.threshold:.3f}).")
    return {"claim": text, "numbers": numbers}


def _top(result, n: int = 3) -> dict:
    top = result.ranking[:n]
    text = "Largest effects: " + "; ".join(f"{k + 1}. {_fmt(e)}" for k, e in enumerate(top)) + "."
    return {"claim": text, "numbers": {"top": [e.to_json() for e in top]}}


def _regions(result) -> dict | None:
    r = result.regions
    if r is None or r.outside_share is None:
        return None
    s = r.outside_share
    return {"claim": (f"{100 * s.estimate:.0f}% [{100 * s.low:.0f}, {100 * s.high:.0f}] of each finding's masking effect lies outside its "
                      f"annotated boxes, in cells covering {100 * r.outside_area:.0f}% of the image."),
            "numbers": {"outside_share": s.to_json(), "outside_area": r.outside_area}}


def _latent(result) -> dict | None:
    lat = result.latent
    if lat is None:
        return None
    moving = [e for e in lat.effects if e.effect.low > MOVES]
    odd = [e for e in moving if e.detail.get("unaligned")]
    fid = lat.fidelity
    text = (f"{len(moving)} of {len(lat.effects)} latent channels at {lat.layer} move a finding's probability by more than {MOVES} "
            f"(lower bound); {len(odd)} of them align with no finding (AUROC < 0.75)"
            + (f": {', '.join(f'{e.name} moves {e.finding} by {e.effect.estimate:.3f}' for e in odd[:4])}" if odd else "")
            + f". Autoencoder fidelity: agreement {fid.get('agreement', float('nan')):.3f}, mean KL {fid.get('mean_kl', float('nan')):.4f}"
            + ("" if fid.get("ok") else " - too low for the latent effects to describe the original model") + ".")
    return {"claim": text, "numbers": {"moving": [e.name for e in moving], "unaligned": [e.name for e in odd], "fidelity": fid}}


def claims(result) -> list[dict]:
    out = [_verdict(result), _top(result)] if result.ranking else [_verdict(result)]
    out += [c for c in (_regions(result), _latent(result)) if c is not None]
    out += [{"claim": f"Known candidate: {_fmt(e)}.", "numbers": e.to_json()} for e in result.known]
    return out
