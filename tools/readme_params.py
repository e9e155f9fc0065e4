"""Generate the README's parameter table from core/options.py (the single declaration).

``/usr/bin/python3 tools/readme_params.py`` rewrites the block between
``<!-- params:start -->`` and ``<!-- params:end -->`` in README.md;
``--check`` exits 1 when the README is out of date (a unit test runs it).
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START, END = "<!-- params:start -->", "<!-- params:end -->"


def _load_options():
    """Import core/options.py without importing the package (it may not be on sys.path)."""
    import importlib.util
    import types
    pkg = types.ModuleType("_sm_core")
    pkg.__path__ = [os.path.join(ROOT, "core")]
    sys.modules["_sm_core"] = pkg
    spec = importlib.util.spec_from_file_location("_sm_core.options",
                                                  os.path.join(ROOT, "core", "options.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sm_core.options"] = module
    spec.loader.exec_module(module)
    return module


def _default(p):
    if p.kind == "enum":
        return f"{p.default} ({p.choices[p.default][0]})"
    if p.kind == "bool":
        return "false" if not p.default else "true"
    if p.default in (None, ()):
        return "required" if not p.optional and p.kind in ("inputs", "output") else "none"
    return f"{p.default:g}" if isinstance(p.default, float) else str(p.default)


def table():
    options = _load_options()
    rows = ["| QGIS name | CLI | default | meaning |", "|---|---|---|---|"]
    for p in options.PARAMS:
        cli = "positional" if p.kind == "inputs" else f"`{p.cli}`"
        meaning = p.help
        if p.kind == "enum":
            meaning += " " + ", ".join(f"{i} `{tok}`" for i, (tok, _l) in enumerate(p.choices)) + "."
        if p.advanced:
            meaning += " *(advanced)*"
        rows.append(f"| `{p.name}` | {cli} | {_default(p)} | {meaning} |")
    return "\n".join(rows)


def render(text):
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    args = parser.parse_args()
    with open(args.readme, encoding="utf-8") as fh:
        text = fh.read()
    if START not in text or END not in text:
        sys.exit(f"{args.readme}: markers {START} / {END} missing")
    new = render(text)
    if args.check:
        if new != text:
            sys.exit("README.md parameter table is out of date: run tools/readme_params.py")
        return
    with open(args.readme, "w", encoding="utf-8") as fh:
        fh.write(new)


if __name__ == "__main__":
    main()
