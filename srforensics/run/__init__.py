"""An audit run, stage by stage: one module per job.

- :mod:`~srforensics.run.config`: what defines an audit (:class:`AuditConfig`).
- :mod:`~srforensics.run.folder`: the run folder: its names, lock, atomic writes, file hashes.
- :mod:`~srforensics.run.timing`: where a run's time went, and what a run returns.
- :mod:`~srforensics.run.exports`: the results, per-input and per-group tables.
- :mod:`~srforensics.run.seal`: the seal of the report and the files that come after the manifest.
- :mod:`~srforensics.run.pipeline`: the pipeline that wires the stages together (:func:`run_audit`).
- :mod:`~srforensics.run.verify`: re-checking a finished run folder (``srforensics verify``).
"""
