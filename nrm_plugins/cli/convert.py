"""``nrm convert IN… -o OUT [--to FORMAT] [--force]``: one file to OUT, or many into the folder OUT."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub, common):
    p = sub.add_parser("convert", parents=[common], help="convert files between formats",
                       description="Read each input with its reader and write it with the writer chosen by "
                                   "--to or by the suffix of OUT (.nc, .zarr, .3ds, ...). With several inputs "
                                   "OUT is a folder and each file keeps its stem. Existing files are never "
                                   "overwritten without --force.")
    p.add_argument("inputs", nargs="+", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--to", metavar="FORMAT", help="output format name (see `nrm plugins`); default: by suffix")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--channels", metavar="ROLE=NAME,…", help="role overrides, e.g. deflection='Input 2 (V)'")
    p.set_defaults(func=run)


def run(args) -> int:
    import nrm_plugins as nrm

    from ..errors import WriterError
    from ..model import parse_channels
    from ..plugins import get_plugin_manager

    channels = parse_channels(args.channels)
    out = Path(args.output)
    pm = get_plugin_manager()
    suffixes = {s for f in pm.write_formats() for s in f.get("suffixes", [])}
    if len(args.inputs) == 1 and (not out.is_dir() or out.suffix.lower() in suffixes):  # a .zarr store is a folder
        targets = [(Path(args.inputs[0]), out)]
    else:
        if out.exists() and not out.is_dir():
            raise WriterError(out, "several inputs need OUT to be a folder")
        if not args.to:
            raise WriterError(out, "several inputs: say the output format with --to (e.g. --to netcdf)")
        suffix = pm.writer_for(out / "x", args.to)["suffixes"][0]
        out.mkdir(parents=True, exist_ok=True)
        targets = [(Path(i), out / (Path(i).stem + suffix)) for i in args.inputs]
    for _, dst in targets:
        if dst.exists() and not args.force:
            raise WriterError(dst, "exists; use --force to overwrite")
    for src, dst in targets:
        nrm.convert(src, dst, format=args.to, channels=channels)
        print(f"{src} -> {dst}")
    return 0
