"""Write docs/cli.md from the argparse definitions: `python docs/gen_cli.py` (tests/test_docs.py checks it)."""
from __future__ import annotations

import os
from pathlib import Path

os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width: make the page reproducible

from nrm_plugins.cli import COMMANDS, build_parser  # noqa: E402

HEAD = """# Command line

One entry point, `nrm`, with a command per job. Every command has `--help` and `--debug`
(show the traceback of an error; otherwise an error is one line on stderr and the exit status is 1).
`nrm --version` prints the version. This page is generated from the program (`python docs/gen_cli.py`).
"""


def main() -> None:
    parser = build_parser()
    group = parser._subparsers._group_actions[0]
    helps = {a.dest: a.help for a in group._choices_actions}
    lines = [HEAD, "| command | what |", "|---|---|"]
    lines += [f"| [`nrm {n}`](#nrm-{n}) | {helps.get(n, '')} |" for n in COMMANDS if n in group.choices]
    lines.append("")
    for name in COMMANDS:
        if name in group.choices:
            lines += [f"## nrm {name}", "", "```text", group.choices[name].format_help().rstrip(), "```", ""]
    (Path(__file__).parent / "cli.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
