"""The paper's two latent claims, judged from the controlled comparisons: headline sentences, tables and verdicts."""

from __future__ import annotations

from ...evaluate.paired_tests import ALPHA
from ...numbers import format_interval
from .measures import MEASURES


def iv(d: dict, spec: str = ".3g") -> str:
    return format_interval(d, spec)


def table_rows(condition: str, comp: dict) -> list[dict]:
    return [
        {
            "measure": MEASURES[m],
            "condition": condition,
            "condition_value": iv(r["condition"]),
            "control": comp["control"],
            "control_value": iv(r["control"]),
            "difference": iv(r["difference"]),
            "verdict": r["difference"]["reads"],
        }
        for m, r in comp["measures"].items()
    ]


def holds(comp: dict, measure: str) -> bool:
    return comp["measures"][measure]["difference"]["verdict"] == "better"


def claims_for(dataset: str, masking: dict, adversarial: dict, has_boxes: bool) -> tuple[list[dict], dict]:
    headline, claims = (
        masking_claims(dataset, masking, has_boxes)
        if masking["comparisons"]
        else (
            [],
            {
                "lesion_specific": {
                    "claim": "masking the finding's region moves the latent profile more than masking the same area "
                    "elsewhere",
                    "forms": {},
                    "verdict": masking.get("note", "not measured"),
                }
            },
        )
    )
    return adversarial_claims(dataset, adversarial, headline, claims)


def masking_claims(dataset: str, masking: dict, has_boxes: bool) -> tuple[list[dict], dict]:
    mc = masking["comparisons"][0]
    what = "the lesion" if has_boxes else "the strokes"
    ece = mc["measures"]["ece_l1"]
    headline = [
        {
            "claim": (
                f"{dataset}: masking {what} shifts the latent ECE profile by {iv(ece['condition'])} (L1), masking "
                f"{masking['control']} by "
                f"{iv(ece['control'])}: difference {iv(ece['difference'])} ({ece['difference']['reads']}); on the "
                "finding's own class-CE "
                f"profile the difference is {iv(mc['measures']['finding_l1']['difference'])}; "
                f"{masking['per_channel'][0]['n_moves_more']} of "
                f"{len(masking['per_channel'][0]['channels'])} channels move significantly more (Holm, alpha {ALPHA})."
            ),
            "table": table_rows(masking["condition"], mc),
        }
    ]
    forms = {
        "as stated (ECE profile L1)": holds(mc, "ece_l1"),
        "per finding (the finding's class-CE profile)": holds(mc, "finding_l1"),
        "per channel (>= 1 channel moves more, Holm)": masking["per_channel"][0]["n_moves_more"] > 0,
        "aligned channels move more than the others, beyond the control": holds(mc, "aligned_minus_other"),
        "per unit of pixel change (ECE profile L1 / pixel L2)": holds(mc, "ece_l1_per_pixel_l2"),
        **output_forms(masking),
    }
    lesion = {
        "claim": f"masking {what} moves the latent profile more than masking the same area elsewhere",
        "forms": forms,
        "verdict": verdict(forms),
        "positive_control": {
            "finding_drop": mc["measures"]["finding_drop"]["difference"],
            "reads": "masking the finding's own region lowers its probability more than the control region"
            if holds(mc, "finding_drop")
            else "masking the finding's own region does not lower its probability more than the control region",
        },
    }
    return headline, {"lesion_specific": lesion}


def adversarial_claims(dataset: str, adversarial: dict, headline: list[dict], claims: dict) -> tuple[list[dict], dict]:
    if adversarial["comparisons"]:
        comps = {c["control"]: c for c in adversarial["comparisons"]}
        linf = next(c for n, c in comps.items() if "L-inf" in n)
        l2s = [c for n, c in comps.items() if "L-inf" not in n]
        for c in adversarial["comparisons"]:
            headline.append(
                {
                    "claim": (
                        f"{dataset}: {adversarial['attack']} (n={adversarial['n']}, success "
                        f"{adversarial['success_rate']:.0%}) shifts the latent ECE profile by "
                        f"{iv(c['measures']['ece_l1']['condition'])}, {c['control']} by "
                        f"{iv(c['measures']['ece_l1']['control'])}: difference "
                        f"{iv(c['measures']['ece_l1']['difference'])} "
                        f"({c['measures']['ece_l1']['difference']['reads']})."
                    ),
                    "table": table_rows(adversarial["condition"], c),
                }
            )
        per_ch = {p["control"]: p for p in adversarial["per_channel"]}
        l2_names = [n for n in comps if "L-inf" not in n]
        forms = {
            "as stated (ECE profile L1, vs noise of the same L-inf)": holds(linf, "ece_l1"),
            "at matched L2 (ECE profile L1, vs Gaussian noise and blur)": all(holds(c, "ece_l1") for c in l2s),
            "per finding, at matched L-inf (the attacked finding's class-CE profile)": holds(linf, "finding_l1"),
            "per finding, at matched L2 (the attacked finding's class-CE profile, vs Gaussian noise and blur)": all(
                holds(c, "finding_l1") for c in l2s
            ),
            "per channel, at matched L2 (>= 1 channel moves more than under Gaussian noise and under blur, Holm)": bool(
                set.intersection(*[{r["channel"] for r in per_ch[n]["channels"] if r["moves_more"]} for n in l2_names])
            ),
            "aligned channels move more than the others, beyond every control": all(
                holds(c, "aligned_minus_other") for c in comps.values()
            ),
            **output_forms(adversarial),
        }
        claims["adversarial_specific"] = {
            "claim": "an adversarial perturbation moves the latent profile more than random or natural perturbations "
            "of the same size",
            "forms": forms,
            "verdict": verdict(forms),
        }
    else:
        claims["adversarial_specific"] = {
            "claim": "an adversarial perturbation moves the latent profile more than perturbations of the same size",
            "forms": {},
            "verdict": "not measured: " + adversarial.get("note", ""),
        }
    return headline, claims


def output_forms(arm: dict) -> dict[str, bool]:
    """The claim again under the controls for the output change (:mod:`.matched`): against a control that lowers
    p(finding) as much, and beyond what the drop in p(finding) explains (regression residuals, against every
    control)."""
    matched = arm.get("output_matched", {}).get("comparisons", [])
    regressions = arm.get("regression", [])
    tolerance = arm.get("output_matched", {}).get("tolerance")
    return {
        f"output-matched (ECE profile L1, vs a control lowering p(finding) as much, within {tolerance})": bool(matched)
        and holds(matched[0], "ece_l1"),
        "output-matched (the finding's class-CE profile, same control)": bool(matched)
        and holds(matched[0], "finding_l1"),
        "beyond the output change (residual of the finding's class-CE profile shift on the drop in p(finding), "
        "against every control)": bool(regressions)
        and all(r["measures"]["finding_l1"]["residual_difference"]["verdict"] == "better" for r in regressions),
    }


def verdict(forms: dict[str, bool]) -> str:
    names = list(forms)
    sharper = [n for n in names[1:] if forms[n]]
    fails = [n for n in names[1:] if not forms[n]]
    if forms[names[0]]:
        return (
            "holds as stated"
            + (f"; also {'; '.join(sharper)}" if sharper else "")
            + (f"; not {'; '.join(fails)}" if fails else "")
        )
    return (
        f"does not hold as stated; holds only {'; '.join(sharper)}" if sharper else "does not hold in any measured form"
    )
