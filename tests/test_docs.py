"""The docs stay true: every CLI command and option is in docs/cli.md, every page in the nav exists,
and the README keeps its two fresh-machine commands and its picture."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nrm_plugins.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _subparsers():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_cli_reference_lists_every_command_and_option(name):
    text = (ROOT / "docs" / "cli.md").read_text()
    assert f"## nrm {name}" in text
    section = text.split(f"## nrm {name}", 1)[1].split("\n## ", 1)[0]
    for action in _subparsers()[name]._actions:
        for option in action.option_strings:
            assert option in section, f"docs/cli.md: nrm {name} lacks {option} (run python docs/gen_cli.py)"


def test_every_nav_page_exists():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    assert len(nav) >= 10
    missing = [p for p in nav if not (ROOT / "docs" / p).is_file()]
    assert not missing, missing


def test_readme_has_the_two_commands_and_the_picture():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert blocks[0].strip() == "pip install . && nrm demo"
    assert blocks[1].strip() == "bash .ci/run"
    image = re.search(r"!\[[^\]]*\]\(([^)]+)\)", text).group(1)
    assert (ROOT / image).is_file() and (ROOT / image).stat().st_size > 10_000
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()
