"""An audit run, stage by stage: one module per job (see ``docs/architecture.md``).

- :mod:`~srforensics.run.config`: what defines an audit (:class:`AuditConfig`).
- :mod:`~srforensics.run.parts`: the protocol, records, model, metrics and matcher, loaded.
- :mod:`~srforensics.run.records`: one record decoded, prepared and degraded.
- :mod:`~srforensics.run.lrs`: the model stage: batches, output checks, scores, ledger rows.
- :mod:`~srforensics.run.scoring`: building the metrics and grouping their calls.
- :mod:`~srforensics.run.identity`: the face matcher; verification and misidentification.
- :mod:`~srforensics.run.gallery`: the report's worst cases, recomputed and saved.
- :mod:`~srforensics.run.exports`: the results, per-input and per-group tables.
- :mod:`~srforensics.run.manifest`: the manifest as the run starts and once it finishes.
- :mod:`~srforensics.run.folder`: the run folder: its names, lock, atomic writes, file hashes.
- :mod:`~srforensics.run.resume`: resuming a run that stopped.
- :mod:`~srforensics.run.executors`: where shards run: here, loaders, workers, Ray.
- :mod:`~srforensics.run.pipeline`: the stage loop (:func:`run_audit`, :func:`resume_audit`).
- :mod:`~srforensics.run.timing`: where a run's time went, and what a run returns.
- :mod:`~srforensics.run.seal`: the seal of the report and the files after the manifest.
- :mod:`~srforensics.run.verify`: re-checking a finished run folder (``srforensics verify``).
"""
