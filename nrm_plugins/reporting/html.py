"""One self-contained HTML page: figures embedded as base64 PNG, tables, parameters and counts inline.

No external stylesheet, script, font or image, no network address: the page opens offline and can be
mailed on its own.  Links point only at anchors inside the page.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

import numpy as np
import pandas as pd

CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4;font-size:15px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:1.8em}h3{font-size:1.05em}
.meta{color:#555;font-size:.9em}nav{font-size:.9em}nav a{margin-right:1em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ccc;padding:.2em .5em;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.2em 0;page-break-inside:avoid}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333;margin-top:.3em}.note{background:#fff6e0;border-left:4px solid #e69f00;
padding:.4em .7em;margin:.5em 0}.warning{background:#fdecea;border-left:4px solid #d55e00;padding:.4em .7em;
margin:.5em 0}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}code{font-size:.9em}
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "—" if not np.isfinite(v) else f"{float(v):.4g}"
    return str(v)


def table_html(df: pd.DataFrame, columns=None, headers=None, max_rows: int = 200) -> str:
    """A DataFrame as an HTML table (escaped), at most ``max_rows`` rows with a note of the rest."""
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    columns = list(columns or df.columns)
    headers = headers or columns
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for _, row in df.head(max_rows).iterrows():
        out.append("<tr>")
        for c in columns:
            v = row[c]
            numeric = isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
            out.append(f"<td class=\"num\">{_e(_fmt(v))}</td>" if numeric else f"<td>{_e(_fmt(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if len(df) > max_rows:
        out.append(f"<p class=\"meta\">… {len(df) - max_rows} more rows in the CSV file.</p>")
    return "".join(out)


def figure_html(number: int, figure: dict) -> str:
    """``figure``: id, title, caption, png_bytes (None: the figure was not drawn), files, notes."""
    parts = [f"<figure id=\"{_e(figure['id'])}\">"]
    if figure.get("png_bytes"):
        data = base64.b64encode(figure["png_bytes"]).decode("ascii")
        parts.append(f"<img alt=\"{_e(figure['title'])}\" src=\"data:image/png;base64,{data}\">")
    caption = f"<b>Figure {number}. {_e(figure['title'])}.</b> {_e(figure.get('caption', ''))}"
    files = figure.get("files") or []
    if files:
        caption += " <span class=\"meta\">Files: " + ", ".join(f"<code>{_e(f)}</code>" for f in files) + ".</span>"
    parts.append(f"<figcaption>{caption}</figcaption>")
    for note in figure.get("notes", []):
        parts.append(f"<p class=\"note\">{_e(note)}</p>")
    parts.append("</figure>")
    return "".join(parts)


def render(*, title: str, meta: list[str], summary: list[tuple[str, str]], windows: pd.DataFrame,
           warnings: list[str], notes: list[str], figures: list[dict], tables: dict, calibration_text: str,
           sources: dict, parameters: list[tuple[str, str]], version: str) -> str:
    """The whole page as text.  ``tables``: {name: (path, DataFrame)} from :func:`tables.write_tables`."""
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = [("summary", "Summary"), ("figures", "Figures"), ("tables", "Tables"), ("parameters", "Parameters")]
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           f"<p class=\"meta\">Report made {_e(now)} by nrm-plugins {_e(version)}.</p>"]
    out += [f"<p class=\"meta\">{_e(m)}</p>" for m in meta]
    out.append("<nav>" + "".join(f"<a href=\"#{a}\">{_e(t)}</a>" for a, t in sections) + "</nav>")

    out.append("<section id=\"summary\"><h2>Summary</h2><table><tbody>")
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary]
    out.append("</tbody></table>")
    out.append("<h3>Windows</h3>")
    if windows is None or windows.empty:
        out.append("<p class=\"note\">No windows: these results were processed without grouping, so there are "
                   "no window statistics (profiles, density maps, violins).</p>")
    else:
        cols = ["window", "lo", "hi", "ramps", "accepted", "profile_n_max", "sei_thickness_mean_m",
                "sei_thickness_ci_low_m", "sei_thickness_ci_high_m", "note"]
        shown = windows.copy()
        for c in ("sei_thickness_mean_m", "sei_thickness_ci_low_m", "sei_thickness_ci_high_m"):
            shown[c] = shown[c] * 1e9
        out.append(table_html(shown, cols, ["window", "from", "to", "ramps", "accepted", "n (profiles, max)",
                                            "SEI thickness (nm)", "CI low (nm)", "CI high (nm)", "note"]))
        for _, row in windows.iterrows():
            if row["note"]:
                out.append(f"<p class=\"note\">Window {_e(row['window'])}: {_e(row['note'])}.</p>")
    if warnings:
        out.append("<h3>Warnings recorded by the processing</h3>")
        out += [f"<p class=\"warning\">{_e(w)}</p>" for w in warnings]
    if notes:
        out.append("<h3>Notes from the report</h3>")
        out += [f"<p class=\"note\">{_e(n)}</p>" for n in notes]
    out.append("</section>")

    out.append("<section id=\"figures\"><h2>Figures</h2>")
    out += [figure_html(i + 1, f) for i, f in enumerate(figures)]
    out.append("</section>")

    out.append("<section id=\"tables\"><h2>Tables</h2>")
    path, df = tables["sublayers"]
    out.append("<h3>Sub-layer boundaries (from d ln E′/dz<sub>p</sub> of the window means)</h3>")
    if not df.empty:
        shown = df.assign(z_nm=df["z_m"] * 1e9, resolution_nm=df["resolution_m"] * 1e9,
                          excess_per_nm=df["excess_per_m"] * 1e-9, threshold_per_nm=df["threshold_per_m"] * 1e-9)
        out.append(table_html(shown, ["window", "z_nm", "resolution_nm", "change", "modulus_ratio",
                                      "excess_per_nm", "threshold_per_nm"],
                              ["window", "z_p (nm)", "± (nm)", "change", "E′ ratio across", "excess (1/nm)",
                               "threshold (1/nm)"]))
    else:
        out.append("<p><em>No boundary passes the criterion (see docs/report.md).</em></p>")
    path, df = tables["flags"]
    out.append("<h3>Flagged ramps by reason</h3>")
    out.append(table_html(df, ["reason", "status", "ramps", "example"]))
    path, df = tables["counts"]
    if not df.empty:
        out.append("<h3>Counts recorded by the processing</h3>")
        out.append(table_html(df))
    out.append("<h3>CSV files</h3><ul>")
    for name, (path, df) in tables.items():
        out.append(f"<li><code>tables/{_e(Path(path).name)}</code> — {len(df)} rows</li>")
    out.append("</ul></section>")

    out.append("<section id=\"parameters\"><h2>Parameters</h2>")
    if parameters:
        out.append("<table><tbody>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in parameters)
                   + "</tbody></table>")
    out.append("<h3>Calibration and settings (resolved, as used)</h3>")
    out.append(f"<pre>{_e(calibration_text.strip() or '(not recorded in the results)')}</pre>")
    if sources:
        out.append("<h3>Where each value came from</h3>")
        out.append(table_html(pd.DataFrame({"value": list(sources), "origin": list(sources.values())}),
                              max_rows=1000))
    out.append("</section></body></html>")
    return "\n".join(out)
