"""The README's parameter table is generated from core/options.py and kept in sync."""

import os
import subprocess
import sys

from streaming_mosaic.cli import build_parser
from streaming_mosaic.core.options import PARAMS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_readme_parameter_table_matches_the_parameter_declaration():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "readme_params.py"),
                           "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_contract_parameter_has_its_cli_option_and_readme_row():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    for p in PARAMS:
        assert f"| `{p.name}` |" in readme, p.name
        if p.cli:
            assert p.cli in flags, p.cli
    for flag in ("--extent-crs", "--checkpoint-seconds", "--plan", "--quiet", "--version"):
        assert flag in flags and flag in readme, flag
