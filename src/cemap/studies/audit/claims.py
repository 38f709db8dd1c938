"""The audit's claims in words, each with its numbers (what ``AuditResult.headline()`` returns)."""

from __future__ import annotations

from .effects import Effect
from .transfer import Transfer

MOVES = 0.05  # a latent channel "moves" a finding when its mean effect's lower bound exceeds this


def _interval(i, pct: bool = False) -> str:
    k = 100 if pct else 1
    fmt = "{:.0f}" if pct else "{:.3f}"
    return f"{fmt.format(k * i.estimate)} [{fmt.format(k * i.low)}, {fmt.format(k * i.high)}]" + ("%" if pct else "")


def describe_effect(e: Effect) -> str:
    return (
        f"{e.label} changes the probability of {e.finding} by {_interval(e.effect)} on average "
        f"and its decision in {_interval(e.decision_change, pct=True)} of images"
    )


def describe_transfer(t: Transfer) -> str:
    return (
        f"swapping the {t.name} carries {_interval(t.carried)} of the differences in {t.finding} between images with "
        "the same "
        f"labels (slope {t.slope:.2f} on differences of {t.rms_difference:.3f} rms, {t.n_pairs} pairs)"
    )


def _verdict(result) -> dict:
    t = result.concern_transfer
    if t is None:
        return {
            "claim": "No pair of audited images shares its labels without annotated findings, so the audit gives no "
            "verdict "
            "(it needs images without findings, or several images of a class).",
            "numbers": {},
        }
    numbers = {"concern": round(result.concern, 4), "threshold": result.threshold, "transfer": t.to_json()}
    if result.flagged:
        text = (
            f"The audit flags this model as relying on something other than the findings: {describe_transfer(t)}; its "
            "lower bound "
            f"{result.concern:.3f} exceeds the rule's threshold {result.threshold:.3f}."
        )
    else:
        text = (
            "The audit does not flag this model: the property that carries most of its decisions beyond the findings "
            "is the "
            f"{t.name} ({_interval(t.carried)} of {t.finding}), lower bound {result.concern:.3f} <= the rule's "
            f"threshold {result.threshold:.3f}."
        )
    return {"claim": text, "numbers": numbers}


def _top_reliance(result, n: int = 3) -> dict | None:
    if not result.reliance:
        return None
    top = result.reliance[:n]
    return {
        "claim": "What carries the model's decisions beyond the findings, largest first: "
        + "; ".join(f"{k + 1}. {describe_transfer(t)}" for k, t in enumerate(top))
        + ".",
        "numbers": {"top": [t.to_json() for t in top]},
    }


def _top_sensitivity(result, n: int = 3) -> dict | None:
    if not result.sensitivity:
        return None
    top = result.sensitivity[:n]
    return {
        "claim": "Largest effects of the interventions on all audited images: "
        + "; ".join(f"{k + 1}. {describe_effect(e)}" for k, e in enumerate(top))
        + ".",
        "numbers": {"top": [e.to_json() for e in top]},
    }


def _regions(result) -> dict | None:
    r = result.regions
    if r is None or r.outside_share is None:
        return None
    return {
        "claim": (
            f"{_interval(r.outside_share, pct=True)} of each finding's masking effect lies outside its annotated "
            "boxes, "
            f"in cells covering {100 * r.outside_area:.0f}% of the image."
        ),
        "numbers": {"outside_share": r.outside_share.to_json(), "outside_area": r.outside_area},
    }


def _latent(result) -> dict | None:
    lat = result.latent
    if lat is None:
        return None
    moving = [e for e in lat.effects if e.effect.low > MOVES]
    odd = [e for e in moving if e.detail.get("unaligned")]
    fid = lat.fidelity
    text = (
        f"{len(moving)} of {len(lat.effects)} latent channels at {lat.layer} move a finding's probability by more "
        f"than {MOVES} "
        f"(lower bound); {len(odd)} of them align with no finding (AUROC < 0.75)"
        + (f": {', '.join(f'{e.name} moves {e.finding} by {e.effect.estimate:.3f}' for e in odd[:4])}" if odd else "")
        + f". Autoencoder fidelity: agreement {fid.get('agreement', float('nan')):.3f}, mean KL "
        f"{fid.get('mean_kl', float('nan')):.4f}"
        + ("" if fid.get("ok") else " - too low for the latent effects to describe the original model")
        + "."
    )
    return {
        "claim": text,
        "numbers": {"moving": [e.name for e in moving], "unaligned": [e.name for e in odd], "fidelity": fid},
    }


def claims(result) -> list[dict]:
    out = [_verdict(result)]
    out += [
        c for c in (_top_reliance(result), _top_sensitivity(result), _regions(result), _latent(result)) if c is not None
    ]
    out += [{"claim": f"Known candidate: {describe_effect(e)}.", "numbers": e.to_json()} for e in result.known]
    return out
