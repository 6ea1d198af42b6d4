"""``nrm report results.nc -o DIR``: figures (PNG + PDF), CSV tables and one self-contained HTML page."""
from __future__ import annotations


def add_parser(sub, common):
    p = sub.add_parser(
        "report", parents=[common], help="figures, tables and an HTML page from a results file",
        description="Write the Fig.-4-style report of a results file (from `nrm process`): mean profiles ± 95 % CI "
                    "per window, |G*| density maps, violins, contact-position and SEI-thickness maps, the CV with "
                    "the ramps, contact-point diagnostics of sampled and flagged ramps, sub-layer boundaries; "
                    "PNG + PDF figures in DIR/figures, CSV tables in DIR/tables, DIR/report.html (opens offline). "
                    "Prints the path of the HTML page.")
    p.add_argument("results", metavar="RESULTS", help="results file (.nc or .zarr) written by `nrm process`")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="folder for the report (created)")
    p.add_argument("--data", nargs="+", metavar="FILE",
                   help="raw data file(s) the results came from, for the contact-point diagnostics "
                        "(default: the results' source_files when they still exist)")
    p.add_argument("--no-data", action="store_true", help="do not open any raw data (no diagnostics drawn)")
    p.add_argument("--sample", type=int, default=4, metavar="N",
                   help="accepted ramps drawn in the diagnostics (default 4)")
    p.add_argument("--max-flagged", type=int, default=30, metavar="N",
                   help="most flagged ramps drawn in the diagnostics, each flag reason in turn (default 30)")
    p.add_argument("--formats", default="png,pdf", metavar="LIST",
                   help="figure file formats, comma separated (default png,pdf; the page embeds PNG)")
    p.add_argument("--dpi", type=int, default=200, help="PNG resolution (default 200)")
    p.add_argument("--title", default="1D-NRM report", help="title of the HTML page")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..reporting import report
    from ..storage import open_native

    formats = tuple(f.strip().lower().lstrip(".") for f in args.formats.split(",") if f.strip())
    results = open_native(args.results)
    try:
        html = report(results, args.output, data=None if args.no_data else args.data, reopen=not args.no_data,
                      sample=args.sample, max_flagged=args.max_flagged, formats=formats or ("png",), dpi=args.dpi,
                      progress=not args.quiet, title=args.title)
    finally:
        results.close()
    print(html)
    return 0
