"""One self-contained HTML file per session: what an operator shows after a run.

Everything is read from the journal, so a report can be written for a session that crashed,
was resumed, or ran on another machine. Plots are matplotlib PNGs inlined as data URIs and
the page has no external reference of any kind: it opens from a USB stick on a PC with no
network. Phases are shaded on every time plot so a reader sees at once which phase a
pressure excursion or an alarm belongs to.
"""

from controller.report.page import render
from controller.report.plots import PHASE_COLOURS, column_removal, plots

__all__ = ["PHASE_COLOURS", "column_removal", "plots", "render"]
