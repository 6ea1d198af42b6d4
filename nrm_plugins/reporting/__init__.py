"""The 1D-NRM report: publication figures (PNG + PDF), CSV tables and one self-contained HTML page.

>>> import nrm_plugins as nrm
>>> html_path = nrm.report(results, "report/", model=ds)     # model: the raw ramps, for the diagnostics

Layout of ``outdir``::

    report.html            the page (figures embedded, opens offline)
    figures/<name>.png|pdf one file per figure and format
    tables/<name>.csv      every statistic (see :mod:`nrm_plugins.reporting.tables`)

The report reads what the pipeline stored (DESIGN.md §3) and recomputes no statistic; the only analysis
of its own is the sub-layer boundary criterion of :mod:`nrm_plugins.reporting.layers`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr

from .._version import __version__
from . import access, figures, layers, raw, tables
from .html import render
from .style import publication_style, save

__all__ = ["report"]

#: ramps drawn per diagnostics figure
DIAGNOSTICS_PER_FIGURE = 6


def _progress(progress):
    if callable(progress):
        return progress
    if progress:
        return lambda text: print(f"nrm report: {text}", file=sys.stderr, flush=True)
    return lambda text: None


def _open_results(results) -> xr.Dataset:
    if isinstance(results, xr.Dataset):
        return results
    from ..storage import open_native

    return open_native(Path(results))


def report(results, outdir, *, model=None, data=None, reopen: bool = True, sample: int = 4,
           max_flagged: int = 30, formats=("png", "pdf"), dpi: int = 200, progress=None, layer_options=None,
           title: str = "1D-NRM report") -> Path:
    """Write the report of ``results`` (Dataset or path to results.nc/.zarr) into ``outdir``; returns the HTML path.

    :param model: the common-model Dataset the results came from (raw ramps for the Fig. 3c–d diagnostics)
    :param data: paths of the raw data files instead of ``model``
    :param reopen: without ``model``/``data``, reopen the results' ``source_files`` when they exist
    :param sample: accepted ramps drawn in the diagnostics (evenly spread over the accepted ramps)
    :param max_flagged: most flagged ramps drawn (each reason in turn, rejected first); the page says how many
        more there are (every flag is in tables/ramps.csv)
    :param formats: file formats of each figure (the HTML embeds the PNG)
    :param dpi: resolution of the PNG files
    :param progress: ``True`` (lines on stderr) or a callable taking a text
    :param layer_options: ``fit_width`` (m), ``k_sigma``, ``contrast`` of the sub-layer criterion
    """
    say = _progress(progress)
    if not isinstance(results, xr.Dataset):
        with _open_results(results) as opened:
            return report(opened, outdir, model=model, data=data, reopen=reopen, sample=sample,
                          max_flagged=max_flagged, formats=formats, dpi=dpi, progress=progress,
                          layer_options=layer_options, title=title)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    formats = tuple(dict.fromkeys(("png",) + tuple(formats)))
    notes: list[str] = []
    wins = access.windows(results)
    has_stats = bool(wins) and "E_storage_mean" in results

    say("sub-layer boundaries")
    boundaries = layers.boundaries(results, "E_storage", **(layer_options or {})) if has_stats else []

    say("tables")
    table_files = tables.write_tables(results, outdir / "tables", boundaries)

    items = []
    figure_dir = outdir / "figures"

    def add(fid, title_, caption, make, notes_=()):
        say(f"figure {fid}")
        with publication_style():
            fig = make()
            files = save(fig, figure_dir / fid, formats, dpi)
        items.append({"id": fid, "title": title_, "caption": caption, "png_bytes": files.pop("png_bytes"),
                      "files": [f"figures/{Path(p).name}" for p in files.values()], "notes": list(notes_)})

    window_notes = [f"{row['window']}: {row['note']}" for row in access.window_ramp_counts(results) if row["note"]]
    ci = access.setting(results, "processing", "ci_method", "t")
    ci_text = {"t": "Student-t", "bootstrap": "bootstrap"}.get(ci, ci)
    z_limit = figures.depth_limit(results) if has_stats else None
    add("profiles_G", "Shear moduli vs depth per window",
        f"Mean G′ (storage) and G″ (loss) of the accepted ramps of each window vs the tip–electrode distance z_p "
        f"(z_p = 0: each ramp's own solid–solid contact point), shaded: 95 % {ci_text} confidence interval of the "
        "mean; n = the most ramps contributing at any depth. ▼: sub-layer boundaries from d ln E′/dz_p (Table).",
        lambda: figures.profile_figure(results, ("G_storage", "G_loss"), boundaries, z_limit), window_notes)
    add("profiles_E", "Young's moduli and viscosity vs depth per window",
        "As Figure 1 for E′, E″ (Eq. 5 of the 1D-NRM paper) and the viscosity η = G″/(2πf) (Eq. 7).",
        lambda: figures.profile_figure(results, ("E_storage", "E_loss", "viscosity"), boundaries, z_limit))
    add("kde", "Density of |G*| vs depth per window",
        "Kernel density of log10 |G*| over the ramps of each window at each depth (as stored in G_abs_kde); "
        "dashed white line: the window's mean |G*|.",
        lambda: figures.kde_figure(results, z_limit), window_notes)
    intervals = ", ".join(str(v) for v in results["interval"].values) if "interval" in results.dims else "none"
    add("violins", "|G*| in depth intervals and SEI thickness per window",
        f"Violins of each accepted ramp's mean |G*| over the depth intervals ({intervals}) and of each ramp's SEI "
        "thickness; bar: interquartile range, dot: median, number at the bottom: ramps.",
        lambda: figures.violin_figure(results))
    add("map_contact", "Contact-position map",
        "Two-line contact position of the accepted ramps over the scanned area (relative to their median: it "
        "follows the electrode topography), per window; mean over the ramps at one location; grey: none accepted.",
        lambda: figures.map_figure(results, "contact_position"))
    add("map_sei", "SEI-thickness map",
        "SEI thickness of the accepted ramps over the scanned area, per window (mean over the ramps at one "
        "location; grey: none).", lambda: figures.map_figure(results, "sei_thickness"))
    add("cv", "Ramps on the cyclic voltammogram",
        f"Electrode potential at each ramp vs time, coloured by window (grouped by '{access.group_key(results)}'); "
        "×: rejected ramps.", lambda: figures.cv_figure(results))

    say("raw data for the diagnostics")
    items += _diagnostics(results, model, data, reopen, sample, max_flagged, figure_dir, formats, dpi, notes, say)

    say("HTML")
    html_path = outdir / "report.html"
    criterion = {**layers.DEFAULTS, **(layer_options or {})}
    html_path.write_text(_page(results, title, items, table_files, notes, criterion), encoding="utf-8")
    say(f"done: {html_path}")
    return html_path


def choose_flagged(ok, flag, limit: int):
    """(all flagged ramps, the ones to draw): rejected ramps, then accepted ones with a warning; at most
    ``limit`` drawn, taken in turn from each reason (the text before the first ':') so that every reason is
    shown, in ramp order within a reason."""
    ok = np.asarray(ok, bool)
    flag = np.asarray(flag).astype(str)
    flagged = np.concatenate([np.flatnonzero(~ok), np.flatnonzero(ok & (flag != ""))])
    if flagged.size <= limit:
        return flagged, flagged
    reasons = {}
    for i in flagged:
        reasons.setdefault((bool(ok[i]), flag[i].split(":", 1)[0].strip()), []).append(i)
    queues = [reasons[k] for k in sorted(reasons, key=lambda k: k[0])]  # rejected reasons first
    drawn = []
    depth = 0
    while len(drawn) < limit:
        for q in queues:
            if depth < len(q) and len(drawn) < limit:
                drawn.append(q[depth])
        depth += 1
    order = {r: k for k, r in enumerate(flagged)}
    return flagged, np.array(sorted(drawn, key=order.get), dtype=np.int64)


def _diagnostics(results, model, data, reopen, sample, max_flagged, figure_dir, formats, dpi, notes, say):
    ok = access.accepted(results)
    flag = access.flags(results)
    contact = access.ramp_values(results, "contact_position").astype(float)
    clean = np.flatnonzero(ok & (flag == "") & np.isfinite(contact))
    chosen = clean[np.unique(np.linspace(0, clean.size - 1, min(sample, clean.size)).round().astype(int))] \
        if clean.size and sample > 0 else np.empty(0, int)
    flagged, drawn = choose_flagged(ok, flag, max_flagged)
    if flagged.size > drawn.size:
        notes.append(f"{flagged.size - drawn.size} more flagged ramps are not drawn in the diagnostics "
                     f"({drawn.size} are, taken in turn from each flag reason; every flag is in tables/ramps.csv).")
    caption = ("Left: raw deflection vs piezo position relative to the ramp's contact point, with the fitted "
               "baseline (blue) and contact line (orange) of the two-line method and their intersection (○) — the "
               "contact point (paper Fig. 3c). Right: z_p = (d_s − d_contact) + δ along the ramp (Fig. 3d); "
               "dashed: contact sample and the ramp's SEI top.")
    if chosen.size + drawn.size == 0:
        return []
    have_lines = all(n in results for n in ("baseline_slope", "baseline_offset", "contact_slope", "contact_offset"))
    try:
        ds, why = raw.open_model(results, model, data, reopen)
    except Exception as exc:  # noqa: BLE001 - unreadable raw data must not stop the report
        ds, why = None, f"raw data unavailable: {type(exc).__name__}: {exc}"
    if ds is None:
        notes.append(why + " — the contact-point diagnostics (Fig. 3c–d) are not drawn.")
        return [{"id": "diagnostics", "title": "Contact-point diagnostics", "caption": caption, "png_bytes": None,
                 "notes": [why + "; nothing drawn."]}]
    if not have_lines:
        notes.append("the results do not store the fitted baseline/contact lines: the diagnostics show the raw "
                     "deflection only.")
    try:
        selected = raw.select(results, ds, np.concatenate([chosen, drawn]))
    except KeyError as exc:
        why = f"raw data unusable for the diagnostics: {exc.args[0]}"
        notes.append(why)
        return [{"id": "diagnostics", "title": "Contact-point diagnostics", "caption": caption, "png_bytes": None,
                 "notes": [why]}]
    finally:
        if ds is not model:  # opened here: release the files
            ds.close()
    missing = int(np.isnan(selected.piezo).all(axis=1).sum())
    if missing:
        notes.append(f"{missing} of the ramps chosen for the diagnostics were not found in the raw data "
                     "(matched by source, index and direction) or are all NaN.")
    items = []
    groups = [("diagnostics_sample", "Contact-point diagnostics: accepted ramps",
               f"{chosen.size} accepted ramps spread evenly over the run. " + caption, 0, chosen.size)]
    for start in range(0, drawn.size, DIAGNOSTICS_PER_FIGURE):
        stop = min(start + DIAGNOSTICS_PER_FIGURE, drawn.size)
        groups.append((f"diagnostics_flagged_{start // DIAGNOSTICS_PER_FIGURE + 1:02d}",
                       f"Contact-point diagnostics: flagged ramps {start + 1}–{stop} of the {drawn.size} drawn "
                       f"({flagged.size} flagged)",
                       "Rejected ramps first, then accepted ramps with a warning; the reason is in each title. "
                       + caption, chosen.size + start, chosen.size + stop))
    for fid, title_, cap, a, b in groups:
        if b <= a:
            continue
        say(f"figure {fid}")
        part = raw.RawRamps(selected.ramps[a:b], selected.piezo[a:b], selected.deflection[a:b],
                            selected.deflection_units, selected.invols)
        with publication_style():
            fig = figures.diagnostics_figure(results, part)
            files = save(fig, figure_dir / fid, formats, dpi)
        items.append({"id": fid, "title": title_, "caption": cap, "png_bytes": files.pop("png_bytes"),
                      "files": [f"figures/{Path(p).name}" for p in files.values()]})
    return items


def _page(results, title, items, table_files, notes, criterion) -> str:
    ok = access.accepted(results)
    n = int(results.sizes.get("ramp", 0))
    counts = results.attrs.get("counts", {}) or {}
    summary = [("ramps read", str(counts.get("read", n))), ("ramps in these results", str(n)),
               ("accepted", f"{int(ok.sum())}"), ("rejected", f"{int((~ok).sum())}"),
               ("accepted with a warning", f"{int((ok & (access.flags(results) != '')).sum())}")]
    if access.windows(results):
        summary.append(("in no window", str(int((~access.membership(results).any(axis=0)).sum()))))
        summary.append(("grouped by", access.group_key(results)))
    if results.attrs.get("profiles") == "omitted":
        summary.append(("per-ramp profiles", "omitted from the results (statistics and densities kept)"))
    source_files = results.attrs.get("source_files", [])
    source_files = [source_files] if isinstance(source_files, str) else list(source_files)
    meta = []
    if source_files:
        meta.append("Data: " + ", ".join(map(str, source_files[:10])) + (" …" if len(source_files) > 10 else ""))
    if results.attrs.get("nrm_version"):
        meta.append(f"Results made by nrm-plugins {results.attrs['nrm_version']}.")
    warnings = results.attrs.get("warnings", [])
    warnings = [warnings] if isinstance(warnings, str) else list(warnings)
    z = np.asarray(results["z"].values, float)
    parameters = []
    for key, label, fmt in (("r_g", "r_g (geometry coefficient, Eq. 5)", "{:.4g}"),
                            ("poisson", "Poisson ratio ν", "{:.3g}"),
                            ("dither_frequency", "dither frequency f (Hz)", "{:.6g}")):
        if key in results.attrs:
            try:
                parameters.append((label, fmt.format(float(results.attrs[key]))))
            except (TypeError, ValueError):
                parameters.append((label, str(results.attrs[key])))
    if z.size:
        step = float(np.median(np.diff(z))) if z.size > 1 else float("nan")
        parameters.append(("depth grid z_p", f"{z[0] * 1e9:.4g}–{z[-1] * 1e9:.4g} nm, step {step * 1e9:.3g} nm"))
    for section, key in (("processing", "contact_method"), ("processing", "derivative_method"),
                         ("processing", "ci_method"), ("processing", "tip_compliance_correction")):
        value = access.setting(results, section, key)
        if value is not None and key not in results.attrs:
            parameters.append((f"[{section}] {key}", str(value)))
    shown = {"r_g", "poisson", "dither_frequency", "calibration", "calibration_sources", "warnings", "counts",
             "source_files", "window_labels", "nrm_version", "title"}
    for key, value in results.attrs.items():  # every other setting the processing recorded
        if key not in shown and isinstance(value, (str, int, float, bool, np.number, np.bool_)) and len(str(value)) < 300:
            parameters.append((key.replace("_", " "), str(value)))
    parameters.append(("sub-layer criterion", f"fit width {criterion['fit_width'] * 1e9:g} nm, "
                                              f"k = {criterion['k_sigma']:g}, contrast {criterion['contrast']:g} "
                                              "(docs/report.md)"))
    sources = results.attrs.get("calibration_sources", {}) or {}
    return render(title=title, meta=meta, summary=summary, windows=table_files["windows"][1], warnings=warnings,
                  notes=notes, figures=items, tables=table_files, calibration_text=str(results.attrs.get("calibration", "")),
                  sources=dict(sources) if isinstance(sources, dict) else {}, parameters=parameters,
                  version=__version__)
