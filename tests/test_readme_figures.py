"""The tables of figures in README.md and benchmarks/README.md are the ones their scripts' JSON gives.

A table tied to its results is preceded by a marker naming the script that produces it and
the table's name in it (the convention is in benchmarks/README.md, "Published figures"):

    <!-- table: benchmarks/realdata/pssr_em.py example -->
    | method | PSNR (dB) | ...

The test imports the script, reads the JSON it writes (its ``RESULTS`` path) and renders the
table with its ``readme_tables(results)``; the README must hold that text exactly, from the
line after the marker to the first blank line. A rerun that changes a figure fails here until
the README follows.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "benchmarks/README.md")
TIED = ("pssr_em", "sim_dlsim", "sim_tsim_er", "sim_tirf_mt", "srrf_deepstorm")  # every script in realdata/
SMLM = ("evaluate", "calibrated", "models")  # every script in smlm/
MARKER = re.compile(r"^<!-- table: (?P<script>\S+\.py) (?P<name>[\w-]+) -->$")


def _markers() -> list[tuple[str, int, str, str]]:
    found = []
    for document in DOCUMENTS:
        for number, line in enumerate((ROOT / document).read_text().splitlines()):
            match = MARKER.match(line)
            if match:
                found.append((document, number, match["script"], match["name"]))
    return found


def _load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_figures_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _block(document: str, after: int) -> str:
    lines = (ROOT / document).read_text().splitlines()[after + 1:]
    end = lines.index("") if "" in lines else len(lines)
    return "\n".join(lines[:end])


def test_the_readmes_tie_tables_to_scripts():
    scripts = {script for _, _, script, _ in _markers()}
    assert {f"benchmarks/realdata/{name}.py" for name in TIED} | {f"benchmarks/smlm/{name}.py" for name in SMLM} \
        | {"benchmarks/peers/bench_peers.py"} <= scripts


@pytest.mark.parametrize(("document", "line", "script", "name"), _markers(),
                         ids=[f"{d}:{n + 1}:{name}" for d, n, _, name in _markers()])
def test_table_matches_the_json_of_its_script(document, line, script, name):
    module = _load(script)
    results_path = Path(module.RESULTS)
    assert results_path.is_file(), f"{script} has not written {results_path}; run it (see its docstring)"
    tables = module.readme_tables(json.loads(results_path.read_text()))
    assert name in tables, f"{script} renders no table {name!r} (it has {sorted(tables)})"
    assert _block(document, line) == tables[name].rstrip("\n"), (
        f"{document}, line {line + 2}: the table differs from what {script} renders from {results_path.name}; "
        "copy the rendered table into the README (print it with `python SCRIPT --tables`)"
    )
