"""An audit run, stage by stage: one module per job.

- :mod:`~srforensics.run.config`: what defines an audit (:class:`AuditConfig`).
- :mod:`~srforensics.run.folder`: the run folder: its names, lock, atomic writes, file hashes.
- :mod:`~srforensics.run.timing`: where a run's time went, and what a run returns.
- :mod:`~srforensics.run.exports`: the results, per-input and per-group tables.

The pipeline that wires the stages together is :mod:`srforensics.audit`.
"""
