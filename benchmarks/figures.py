"""What the benchmark scripts share to publish figures: machine facts and Markdown tables.

Every script that produces a figure published in README.md or benchmarks/README.md writes its
results as JSON (its module-level ``RESULTS`` path) and renders the README's tables from that
JSON with ``readme_tables(results) -> {name: markdown}``; ``tests/test_readme_figures.py`` checks
that each README table marked ``<!-- table: SCRIPT NAME -->`` is exactly that text. Run a script
with ``--tables`` to print its tables from its JSON without recomputing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The shared real data, as the tests find it (tests/conftest.py): $MICROSR_DATA or ../shared/data.
DATA = Path(os.environ.get("MICROSR_DATA", ROOT.parent / "shared" / "data"))


def machine() -> dict[str, Any]:
    """CPU model, cores, bfloat16 support, load and versions: what a published figure ran on."""
    import torch

    flags = ""
    model = platform.processor()
    try:
        cpuinfo = open("/proc/cpuinfo").read()
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                      if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "cpu": model, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags,
        "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()), "nice": os.nice(0), "argv": sys.argv,
    }


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table: ``align`` is one letter per column, ``l`` or ``r`` (default: all ``l``).

    Examples
    --------
    >>> print(markdown_table(["method", "PSNR"], [["bicubic", "21.24"]], align="lr"))
    | method | PSNR |
    | --- | ---: |
    | bicubic | 21.24 |
    """
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def print_tables(tables: dict[str, str], script: str) -> None:
    """Print each rendered table of ``script`` (its ``__file__``) under its README marker, ready to paste."""
    where = Path(script).resolve().relative_to(ROOT)
    for name, table in tables.items():
        print(f"<!-- table: {where} {name} -->\n{table}\n")


def parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a figure script: its docstring's first line as description, and ``--tables``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--tables", action="store_true", help="only print the README tables from the JSON")
    return parser


def publish(results: Path, compute: Callable[[], dict[str, Any]] | None,
            readme_tables: Callable[[dict[str, Any]], dict[str, str]], script: str) -> None:
    """Run ``compute`` (``None``: ``--tables``, reuse the JSON), write its results to ``results`` with the
    seconds it took and the :func:`machine`, then print the README tables rendered from that JSON."""
    if compute is not None:
        start = time.perf_counter()
        values = compute()
        values.setdefault("seconds", round(time.perf_counter() - start, 1))
        values.setdefault("machine", machine())
        results.write_text(json.dumps(values, indent=1) + "\n")
    print_tables(readme_tables(json.loads(results.read_text())), script)
