"""The studies: workflows that run cemap's pieces on a dataset and write a run folder.

Each study is ``run_<study>(ctx, config) -> <Study>Result``: it takes the one :class:`StudyContext`
(classifier, data splits, autoencoder, output folder, seeded streams, figure drawer) and a config, and
returns a typed result (:mod:`.results`) whose ``to_json()`` is the file it writes and whose
``headline()`` the report shows first.

* :mod:`.context` - the ``StudyContext``;
* :mod:`.results` - every study's result type (light: the report reads run folders with it);
* :mod:`.figures` - the figures a study asks for, as data (the report draws them);
* :mod:`.overview` - classifier quality, autoencoder fidelity, CE maps and clean latent profiles;
* :mod:`.latent_controls` - the paper's latent experiments beside their controls (a package);
* :mod:`.evaluation` - explanation methods against ground truth (``cemap evaluate``);
* :mod:`.detection` - adversarial detection (``cemap detect``; a package);
* :mod:`.explain_files` - CE maps and profiles for a user's image files (``cemap explain`` / ``predict``);
* :mod:`.bench` - speed ratios against the anchors (``cemap bench``; a package);
* :mod:`.demo` - the full study behind ``cemap demo`` (the stages above, cached);
* :mod:`.stage_cache` - stages restored instead of recomputed when nothing they depend on changed;
* :mod:`.explorer` - the image explorer's per-image data (explorer*.npz).

Nothing here is imported by ``import cemap``: each study pulls in what it needs when it runs.
"""
