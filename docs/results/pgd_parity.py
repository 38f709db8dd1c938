"""fp32 PGD, cemap vs torchattacks, interleaved in one process: 8 pairs, the order alternating within pairs.

The bench times the two in different processes, one after the other, where drift between them is about as large
as the difference being measured (bit-identical outputs mean identical arithmetic). Run from the repository root:
    .venv/bin/python docs/results/pgd_parity.py > docs/results/pgd_parity.txt
"""

import statistics
import time

import torch

from cemap.attacks import PGD
from cemap.studies.bench import BenchConfig, bench_classifier, bench_images
from cemap.studies.bench.references import torchattacks_pgd

torch.set_num_threads(2)
clf = bench_classifier(BenchConfig())
x = bench_images(clf, 8, 0)
with torch.inference_mode():
    z = clf(x)
labels = z.argmax(1)
original = (z.gather(1, labels[:, None]).squeeze(1) > 0).float()
attack = PGD(clf, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False, loss="ce")


def ours() -> torch.Tensor:
    return attack(x, labels).adversarial


def theirs() -> torch.Tensor:
    return torchattacks_pgd(clf, x, labels, original, 8 / 255, 2 / 255, 10, "fp32")


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


print("identical", torch.equal(ours(), theirs()))
ratios, t_ours, t_theirs = [], [], []
for i in range(8):
    if i % 2:
        o, t = seconds(ours), seconds(theirs)
    else:
        t, o = seconds(theirs), seconds(ours)
    t_ours.append(o)
    t_theirs.append(t)
    ratios.append(t / o)
    print(f"pair {i}: cemap {o:.3f} s torchattacks {t:.3f} s ratio {t / o:.4f}", flush=True)
print("median ratio", statistics.median(ratios), "mean", statistics.mean(ratios), "stdev", statistics.stdev(ratios))
print("median times", statistics.median(t_ours), statistics.median(t_theirs))
