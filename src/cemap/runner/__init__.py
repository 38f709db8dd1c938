"""Dataset-scale runs: streamed to disk in shards, resumable, tolerant of bad images, shardable under torchrun.

Run a whole split: ``run_dataset(RunConfig(dataset="mnist5k"), "out/run")`` or
``cemap run --dataset mnist5k --out out/run``; under ``torchrun --nproc_per_node=N -m cemap run
...`` each rank computes every N-th shard (several nodes work the same way, provided the run
folder is on a filesystem they all see). Read it back without recomputing:
``load_run("out/run").results(maps=["ce"])``.

Folder format (``cemap-run/2``)::

    .lock                  held (fcntl.flock, the holder's PID inside) by the one process that writes here;
                           a second cemap run on the folder is refused at once, naming that PID
    config.json            what determines the results (RunConfig + model weight fingerprint);
                           written first, compared on --resume
    autoencoder.pt         the latent autoencoder every session and rank uses (weights_only
                           checkpoint: state_dict + info: layer, config, training data, fidelity)
    shards/
      shard-000123.parquet rows of dataset positions [123 * shard_size, 124 * shard_size), in
                           position order, one row per readable image; written last, so its
                           presence marks the shard committed
      shard-000123.npz     compressed float32 maps, key -> n_rows x H x W in the same row order,
                           plus "index" (the positions); keys: "ce" (the CE map), each baseline method,
                           "ce@<attack>" (CE map of the adversarial image)
      shard-000123.errors.jsonl   {"index", "id", "reason"} per unreadable image
    errors.jsonl           all shards' errors, in position order (written at the end)
    manifest.json          written by rank 0 once every shard is committed: config, class names,
                           map names, columns, autoencoder fidelity, per-shard counts, totals,
                           throughput of the last session; its presence marks the run finished

Row columns: ``index`` (position in the dataset split), ``id``, ``label`` (single-label) or
``labels`` (multi-hot), ``boxes`` (N x 4 xyxy pixels), ``box_labels``, ``probs``, ``target``
(the class all maps explain: the top prediction), ``latent_ce`` (ECE of do(Z_j = v) for each
code channel) and, per attack A, ``A.success``, ``A.linf``, ``A.l2``, ``A.probs``, ``A.latent_ce``.

Files are written to a temporary sibling and renamed (``os.replace``), so a kill leaves at most
temporary files, which ``--resume`` deletes (under the lock, and never one whose writer is still
alive) before recomputing the shards that lack a table. A full disk stops the run with one line
naming the file; every committed shard stays, and ``--resume`` continues once there is space.
A dataset reports an unreadable item by raising CemapError (or OSError) from ``__getitem__``;
it may define ``item_id(index)`` so the errors file names the item.
"""

from .config import RunConfig
from .engine import run_dataset
from .results import ImageResult, RunResults, load_run, run_summary

__all__ = ["ImageResult", "RunConfig", "RunResults", "load_run", "run_dataset", "run_summary"]
