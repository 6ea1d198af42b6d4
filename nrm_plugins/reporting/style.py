"""One publication style for every report figure.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered by the Agg (PNG) and PDF canvases —
pyplot is never imported, so the report neither needs a display nor changes the backend of the
program that calls it (a Jupyter session keeps its own).  All figures are drawn inside
:func:`publication_style` (an ``rcParams`` context): 8 pt sans-serif text, inward ticks on all four
sides, thin lines, TrueType fonts embedded in the PDF (editable text), and one colour per window from
the Okabe–Ito colour-blind-safe palette (a sequential map when there are more than eight windows).
"""
from __future__ import annotations

import io
import math
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter

#: double-column width of a journal page, inches
FULL_WIDTH = 7.0
#: single-column width, inches
COLUMN_WIDTH = 3.4

RC = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "axes.linewidth": 0.7,
    "axes.titlepad": 3,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "xtick.major.width": 0.7,
    "ytick.major.width": 0.7,
    "xtick.minor.width": 0.5,
    "ytick.minor.width": 0.5,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "xtick.minor.size": 1.6,
    "ytick.minor.size": 1.6,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "lines.linewidth": 1.1,
    "lines.markersize": 3,
    "image.cmap": "viridis",
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "standard",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "axes.formatter.use_mathtext": True,
}

#: Okabe & Ito (2008) colour-blind-safe palette, black left out (kept for mean lines over maps)
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#999999"]
OUTSIDE_COLOUR = "#BBBBBB"  # ramps that belong to no window
#: band opacity of a confidence interval
BAND_ALPHA = 0.25


@contextmanager
def publication_style():
    """``with publication_style(): ...`` — the report's rcParams for drawing and saving."""
    with matplotlib.rc_context(RC):
        yield


def window_colours(n: int) -> list[str]:
    """One colour per window, in window order."""
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    cmap = matplotlib.colormaps["plasma"]
    return [matplotlib.colors.to_hex(cmap(0.05 + 0.8 * i / max(n - 1, 1))) for i in range(n)]


def new_figure(width: float = FULL_WIDTH, height: float = 2.6) -> Figure:
    """A Figure with constrained layout, not attached to pyplot."""
    with publication_style():
        return Figure(figsize=(width, height), layout="constrained")


def panel_grid(fig: Figure, n: int, max_columns: int = 4, **kw):
    """``n`` panels in rows of at most ``max_columns``; returns the list of n axes (extra cells unused)."""
    ncols = max(1, min(n, max_columns))
    nrows = max(1, -(-n // ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def log10_axis(axis, unit_scale: float = 1e-6):
    """Label an axis that holds log10(value in SI) with the values in the plotted unit (e.g. MPa).

    Major ticks at every decade, minor ticks at 2..9 × each decade, labels like ``0.1``, ``1``, ``10``.
    """
    shift = math.log10(unit_scale)
    lo, hi = axis.get_view_interval()
    lo, hi = min(lo, hi), max(lo, hi)
    majors = [k for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1)]
    minors = [k + math.log10(m) for k in range(int(math.floor(lo)) - 1, int(math.ceil(hi)) + 1) for m in range(2, 10)]
    axis.set_major_locator(FixedLocator(majors))
    axis.set_minor_locator(FixedLocator(minors))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _decade_label(v + shift)))


def _decade_label(exponent: float) -> str:
    k = round(exponent)
    if -3 <= k <= 4:
        return f"{10.0 ** k:g}"
    return f"$10^{{{k}}}$"


def note_in_axes(ax, text: str) -> None:
    """A grey centred note in an empty panel (``no ramps``, ``one ramp: no confidence interval``)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.35", fontsize=7,
            wrap=True)


def save(fig: Figure, stem: Path, formats=("png", "pdf"), dpi: int | None = None) -> dict:
    """Write ``stem.<format>`` for each format; returns {format: path} and the PNG bytes under ``"png_bytes"``."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    with publication_style():
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            if fmt == "png":
                buffer = io.BytesIO()
                fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
                data = buffer.getvalue()
                path.write_bytes(data)
                out["png_bytes"] = data
            else:
                fig.savefig(path, format=fmt, dpi=dpi, metadata={"Creator": None} if fmt == "pdf" else None)
            out[fmt] = path
            fig.set_layout_engine("none")  # the layout is settled by the first save: do not redo it per format
    return out
