"""Figures and reports: what a study or a validation found, as PNGs and one HTML page.

study.py (a study's run folder: figures, summary.md, report.html), validation.py (a
validation's scatter and <name>.html), study_plots.py / validation_plot.py (the figures),
html.py (a self-contained page: Markdown tables as HTML, figures as base64 PNG), mpl.py
(matplotlib, imported lazily with the Agg backend). The last stage of the flow: it reads
study/ and validation/ results; nothing upstream imports it.
"""
