"""``nrm plugins``: every registered plugin with its origin, hooks and methods; broken ones with why."""
from __future__ import annotations

import json


def add_parser(sub, common):
    p = sub.add_parser("plugins", parents=[common], help="list registered plugins and their origin",
                       description="List every plugin of the entry-point group 'nrm_plugins': built-in or "
                                   "from which distribution, the hooks it implements, its readers, writers "
                                   "and methods. Plugins that failed to load are listed with the reason.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..plugins import get_plugin_manager

    pm = get_plugin_manager()
    formats = pm.write_formats()
    provided = {kind: pm.provided(kind) for kind in pm.PROVIDED}  # {kind: {name: (plugin, item)}}
    rows = []
    for info in pm.plugins():
        row = {
            "name": info.name, "origin": "built-in" if info.builtin else info.origin,
            "distribution": info.origin, "version": info.version, "module": info.module,
            "hooks": info.hooks, "status": "broken" if info.error else "ok", "error": info.error,
            "writes": [f["name"] for f in formats if f["plugin"] == info.name],
            "methods": {k: sorted(n for n, (owner, _) in items.items() if owner == info.name)
                        for k, items in provided.items() if k != "hw"},
            "hw_sources": sorted(n for n, (owner, _) in provided["hw"].items() if owner == info.name),
        }
        row["methods"] = {k: v for k, v in row["methods"].items() if v}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<16} {row['status']:<7} {row['origin']:<22} {row['module']}")
        if row["error"]:
            print(f"    skipped: {row['error']}")
            continue
        if row["hooks"]:
            print(f"    hooks: {', '.join(row['hooks'])}")
        if row["writes"]:
            print(f"    writes: {', '.join(row['writes'])}")
        for kind, names in row["methods"].items():
            print(f"    {kind} methods: {', '.join(names)}")
        if row["hw_sources"]:
            print(f"    hardware sources: {', '.join(row['hw_sources'])}")
    broken = sum(r["status"] == "broken" for r in rows)
    print(f"{len(rows)} plugin(s), {broken} broken")
    from .. import native

    print("compiled pipeline kernels: " + ("yes" if native.available() else f"no ({native.reason}); the numpy "
                                           "implementations run instead (same results, slower)"))
    return 0

