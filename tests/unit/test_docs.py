"""The README's parameter table is generated from core/options.py and kept in sync, and the
declaration itself matches the fixed interface in shared/CONTRACT.md (names, enum order, CLI)."""

import os
import re
import subprocess
import sys

import pytest

from streaming_mosaic.cli import build_parser
from streaming_mosaic.core.errors import OptionError
from streaming_mosaic.core.options import PARAM_BY_NAME, PARAMS, choice

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTRACT = os.path.join(os.path.dirname(ROOT), "shared", "CONTRACT.md")
# Contract parameters whose issue is still open: not declared yet, and so not accepted.
PENDING = {}


@pytest.fixture(scope="module")
def contract():
    if not os.path.exists(CONTRACT):
        pytest.skip(f"no {CONTRACT} beside the checkout (a clone outside the workspace)")
    return open(CONTRACT, encoding="utf-8").read()


def contract_rows(text):
    """{NAME: (type, meaning)} of the contract's parameter table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"[A-Z_]+", cells[0]):
            rows[cells[0]] = (cells[1], cells[3])
    return rows


def contract_choices(meaning):
    """[(index, text)] of an enum's meaning: ``0 last (later ...), 1 first, ...``."""
    return [(int(i), t.strip().lower()) for i, t in
            re.findall(r"(?:^|[:,]\s*)(\d+) ([A-Za-z][A-Za-z0-9 ]*?)(?=\s*(?:\(|,|$))", meaning)]


def test_readme_parameter_table_matches_the_parameter_declaration():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "readme_params.py"),
                           "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_contract_parameter_is_declared_with_its_enum_values_in_order(contract):
    rows = contract_rows(contract)
    assert len(rows) > 20
    for name, (kind, meaning) in rows.items():
        if name in PENDING:
            assert name not in PARAM_BY_NAME, f"{name} is declared now: take it off PENDING"
            continue
        assert name in PARAM_BY_NAME, f"{name} of the contract is not declared"
        param = PARAM_BY_NAME[name]
        if kind != "enum":
            continue
        listed = contract_choices(meaning)
        assert [i for i, _ in listed] == list(range(len(listed))), (name, listed)
        for index, text in listed:
            ours, label = param.choices[index]
            assert text.replace(" ", "") == ours or label.lower().startswith(text), \
                f"{name} {index}: contract says {text!r}, we declare {ours!r} ({label!r})"


def test_every_cli_option_of_the_contract_is_accepted_with_its_values(contract):
    section = contract.split("## Command line", 1)[1].split("\n## ", 1)[0]
    flags = {opt for action in build_parser()._actions for opt in action.option_strings}
    named = set(re.findall(r"(--[a-z][a-z-]+)", section)) - set(PENDING.values())
    assert len(named) > 20
    assert named <= flags, sorted(named - flags)
    by_flag = {p.cli: p for p in PARAMS if p.cli}
    for flag, values in re.findall(r"`(--[a-z-]+) ([a-z0-9]+(?:\|[a-z0-9:N/]+)+)", section):
        param = by_flag.get(flag)
        if param is None or param.kind != "enum":
            continue
        for value in values.split("|"):
            assert choice(param.attr, value) in param.names, (flag, value)
    with pytest.raises(OptionError):
        choice("method", "no-such-rule")


def test_the_cli_help_and_readme_name_every_option():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    proc = subprocess.run([sys.executable, "-m", "streaming_mosaic", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    for p in PARAMS:
        assert f"| `{p.name}` |" in readme, p.name
        if p.cli:
            assert p.cli in proc.stdout, p.cli
    for flag in ("--extent-crs", "--checkpoint-seconds", "--plan", "--quiet", "--version"):
        assert flag in proc.stdout and flag in readme, flag
