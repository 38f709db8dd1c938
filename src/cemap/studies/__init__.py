"""The studies: workflows that run cemap's pieces on a dataset and write a run folder.

* :mod:`.context` - the one ``StudyContext`` (classifier, data splits, autoencoder, output folder, seeded streams);
* :mod:`.demo` - the full study behind ``cemap demo`` (every stage below, cached, then the report);
* :mod:`.overview` - classifier quality, autoencoder fidelity, CE maps and clean latent profiles;
* :mod:`.evaluation` - explanation methods against ground truth (``cemap evaluate``);
* :mod:`.detection` - adversarial detection (``cemap detect``);
* :mod:`.explain_files` - CE maps and profiles for a user's image files (``cemap explain`` / ``predict``);
* :mod:`.bench` - speed ratios against the anchors (``cemap bench``);
* :mod:`.stage_cache` - stages restored instead of recomputed when nothing they depend on changed.

Nothing here is imported by ``import cemap``: each study pulls in what it needs when it runs.
"""
