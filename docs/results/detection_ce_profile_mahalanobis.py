"""Issue 29's last try at a causal detector: a Mahalanobis score on the latent CE profile, unsupervised.

`cemap detect` saves every detector's inputs (features.npz). This fits one Gaussian (shared-covariance Mahalanobis,
``cemap.detect.baselines.Mahalanobis``, one class) on the *clean fit-part* images' log-odds CE signatures and scores
the evaluation part: clean images against their successful adversarials, paired by image. It sees no adversarial at
all, like unsupervised feature squeezing and Lee et al.'s Mahalanobis, which it is compared with on the same images
(paired bootstrap over images). Two forms, both fixed before any result was seen: the 16-channel latent CE profile
alone, and the whole signature (profile and CE-map statistics, signed log as the supervised detector applies it).

    python docs/results/detection_ce_profile_mahalanobis.py OUT.json DATASET=RUN_DIR ...

Each RUN_DIR is one `cemap detect --dataset DATASET --train-seed K --out RUN_DIR` folder.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from cemap.detect.baselines import Mahalanobis
from cemap.evaluate.bootstrap import bootstrap_auroc, paired_auroc_difference
from cemap.jsonio import write_json

FORMS = ("profile", "signature")
RIVALS = {"mahalanobis": lambda f: f[:, 0], "feature_squeezing": lambda f: f.max(1)}  # their unsupervised scores
N_BOOT = 2000


def _columns(doc: dict, form: str) -> tuple[list[int], bool]:
    names = doc["detectors"]["ce_log_odds"]["features"]
    if form == "profile":
        return [i for i, n in enumerate(names) if n.startswith("latent_")], False
    return list(range(len(names))), True


def _prepared(x: np.ndarray, cols: list[int], signed_log: bool) -> torch.Tensor:
    x = x[:, cols]
    return torch.from_numpy(np.sign(x) * np.log1p(np.abs(x)) if signed_log else x)


def run_rows(folder: Path) -> dict:
    """Per attack of one run: the unsupervised CE-profile score's AUROC and its paired differences to the rivals."""
    doc = json.loads((folder / "detection.json").read_text())
    z = np.load(folder / "features.npz")
    attacks = [k[len("eval/success/") :] for k in z.files if k.startswith("eval/success/")]
    rows = {}
    for form in FORMS:
        cols, signed_log = _columns(doc, form)
        fit = _prepared(z["fit/clean/ce_log_odds"], cols, signed_log)
        gauss = Mahalanobis().fit(fit, torch.zeros(len(fit), dtype=torch.long))
        score = lambda x: gauss.distance(_prepared(x, cols, signed_log)).numpy()  # noqa: E731
        for key in attacks:
            ok = z[f"eval/success/{key}"].astype(bool)
            if ok.sum() < 2:
                continue
            ours = score(z["eval/clean/ce_log_odds"][ok]), score(z[f"eval/adversarial/{key}/ce_log_odds"])
            row = rows.setdefault(key, {"n": int(ok.sum())})
            row[f"ce_{form}_mahalanobis"] = bootstrap_auroc(*ours, N_BOOT, 0, paired=True).to_json()
            for rival, fn in RIVALS.items():
                theirs = fn(z[f"eval/clean/{rival}"][ok]), fn(z[f"eval/adversarial/{key}/{rival}"])
                row.setdefault(f"unsupervised_{rival}", bootstrap_auroc(*theirs, N_BOOT, 0, paired=True).to_json())
                d = paired_auroc_difference(*ours, *theirs, N_BOOT, 0, paired=True)
                row[f"ce_{form}_minus_{rival}"] = d.to_json()
    return {"train_seed": doc.get("train_seed", 0), "attacks": rows}


def main(out: str, sources: list[str]) -> None:
    result = {
        "what": __doc__.split("\n\n")[1].replace("\n", " "),
        "command": "python docs/results/detection_ce_profile_mahalanobis.py " + " ".join(sys.argv[1:]),
        "datasets": {},
    }
    for source in sources:
        dataset, folder = source.split("=", 1)
        result["datasets"].setdefault(dataset, []).append(run_rows(Path(folder)))
    for dataset, runs in result["datasets"].items():
        print(f"## {dataset}\n")
        for run in runs:
            for key, row in run["attacks"].items():
                cells = [f"{f}: {row[f'ce_{f}_mahalanobis']['estimate']:.3f}" for f in FORMS]
                vs = [
                    f"{f} vs {r} {row[f'ce_{f}_minus_{r}']['estimate']:+.3f} {row[f'ce_{f}_minus_{r}']['verdict']}"
                    for f in FORMS
                    for r in RIVALS
                ]
                print(f"train {run['train_seed']} {key} (n={row['n']}): {', '.join(cells)}; " + "; ".join(vs))
    write_json(out, result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
