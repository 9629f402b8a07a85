"""HTML reports rendered from a finished run's ledger and manifest (never the live pipeline)."""

from __future__ import annotations

from srforensics.report.render import histograms, render_report, render_template

__all__ = ["histograms", "render_report", "render_template"]
