"""The run report for people and machines: ``report.json``, ``report.md`` and the plots.

:mod:`writer` writes both files, :mod:`markdown` renders the markdown (one renderer, reading the
typed task results), :mod:`headline` picks the few numbers the CLI prints, :mod:`plots` draws
the charts.
"""
