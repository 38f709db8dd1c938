"""``cemap bench``: cemap's hot paths against the tools people would otherwise use, as ratios from one run.

Every figure is the median of ``repeats`` timed runs after ``warmup`` untimed ones, on the
same inputs. The anchors (Captum ``Occlusion``, torchattacks ``PGD`` and the one-forward-per-
intervention latent loop) run by default in a fresh process with the allocator they ship with,
because importing cemap raises glibc's mmap threshold for its process (see ``causal.batching``);
``anchors_in_process=True`` runs them beside cemap instead, which isolates the algorithmic gain.
Timings on a shared machine are noisy: quote figures from a quiet one.

Modules: :mod:`.run` (:func:`run_bench`, the result and its table), :mod:`.inputs`, :mod:`.timing`,
:mod:`.references` (the anchors, which the tests also use as oracles), :mod:`.sections` (cemap's side),
:mod:`.quality`.
"""

from .inputs import BenchConfig, bench_classifier, bench_images
from .run import BenchResult, run_bench
from .table import format_table
from .sections import rank_correlation
from .timing import fraction_of_peak, measured_peak, timed

__all__ = [
    "BenchConfig",
    "BenchResult",
    "bench_classifier",
    "bench_images",
    "format_table",
    "fraction_of_peak",
    "measured_peak",
    "rank_correlation",
    "run_bench",
    "timed",
]
