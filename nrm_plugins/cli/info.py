"""``nrm info FILE… [--json]``: what a file holds (ramps, images, channels, roles, units, metadata)."""
from __future__ import annotations

import json


def add_parser(sub, common):
    p = sub.add_parser("info", parents=[common], help="show what a file holds",
                       description="Open each FILE with the reader that recognises it and show its ramps, "
                                   "images, channels (vendor name, variable, role, units) and metadata.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--channels", metavar="ROLE=NAME,…",
                   help="which vendor channel plays which role, e.g. deflection='Input 2 (V)'")
    p.set_defaults(func=run)


def run(args) -> int:
    import nrm_plugins as nrm

    from ..model import describe, parse_channels
    from ..plugins import get_plugin_manager

    channels = parse_channels(args.channels)
    out = []
    for path in args.files:
        ds = nrm.open(path, channels=channels)
        entry = {"file": str(path), "reader": ds.attrs.get("reader", ""), **describe(ds)}
        entry["scores"] = [{"reader": n, "score": s} for s, n in get_plugin_manager().identify(path)]
        out.append(entry)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    for e in out:
        print(f"{e['file']}  (reader: {e['reader']})")
        if e["ramps"]:
            dirs = ", ".join(f"{k}: {v}" for k, v in e.get("directions", {}).items())
            print(f"  ramps: {e['ramps']} x {e['samples']} samples" + (f"  ({dirs})" if dirs else ""))
            print(f"  roles: {', '.join(e['roles']) or 'none assigned (use --channels)'}")
            print("  channels:")
            for c in e["channels"]:
                role = f"  [{c['role']}]" if c["role"] else ""
                print(f"    {c['name']:<24} {c['units']:<6} {c['long_name']}{role}")
        for im in e["images"]:
            print(f"  image {im['name']}: {im['shape'][0]} x {im['shape'][1]} ({im['units']}) {im['long_name']}")
        meta = {k: v for k, v in e["metadata"].items() if not isinstance(v, (dict, list)) or len(str(v)) < 80}
        if meta:
            print("  metadata:")
            for k, v in meta.items():
                print(f"    {k} = {v}")
    return 0
