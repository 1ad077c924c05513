"""Execute the notebooks top to bottom on real data and keep the executed copies in notebooks/executed/.

One real run, as a student makes it, with the exercises' solutions (notebooks/solutions/exercises.py) filled in where
the stubs are, so the executed copies show what a right answer prints (their first cell says so): notebook 03 trains
its preset (on a CPU `cpu-fast`, 15 minutes of training) into a fresh runs/course/, 04 writes the figures to plots/
and 05 the submission and the hand-in to handin/.
The sources in notebooks/ are not touched. An earlier runs/course/ is moved aside, never deleted.
  python notebooks/execute.py --data DATA        # about 25 minutes on a 2-core CPU
  python notebooks/execute.py --smoke --out DIR   # smoke mode, as the tests run them: under a minute each
Prints each notebook's wall time and writes them to timings.json beside the executed copies.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent
PROJECT = NOTEBOOKS.parent
EXECUTED = NOTEBOOKS / "executed"
SOLUTIONS = NOTEBOOKS / "solutions" / "exercises.py"
CHECK = re.compile(r'^check\("(\w+)", \1\)', re.MULTILINE)  # an exercise's check: the stub is the code above it


def solutions() -> tuple[dict[str, str], str]:
    """Each solution's source by name (functions and classes with their decorators, and assignments), and the
    solutions file's imports."""
    text = SOLUTIONS.read_text()
    lines, found, imports = text.splitlines(), {}, []
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(ast.get_source_segment(text, node))
            continue
        name = node.name if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
            node.targets[0].id if isinstance(node, ast.Assign) else None
        if name:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            found[name] = "\n".join(lines[start - 1:node.end_lineno])
    return found, "\n".join(imports)


def with_solutions(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with every exercise's stub replaced by its solution, saying so in its first cell."""
    found, imports = solutions()
    for cell in notebook.cells:
        match = CHECK.search(cell.source) if cell.cell_type == "code" else None
        if match and match.group(1) in found:
            cell.source = f"{found[match.group(1)]}\n\n\n{cell.source[match.start():]}"
    notebook.cells[0].source += (f"\n\n> **This executed copy** ran on {datetime.date.today().isoformat()} with the "
                                 f"exercises' solutions (`notebooks/solutions/exercises.py`) filled in, so every check "
                                 f"shows what a right answer prints.")
    notebook.cells.insert(2, nbformat.v4.new_code_cell(f"# the solutions' imports\n{imports}"))
    return notebook


def execute(path: Path, out: Path) -> tuple[float, bool]:
    """Run one notebook in a fresh kernel, save the executed copy (also when a cell fails), return its time."""
    notebook = with_solutions(nbformat.read(path, as_version=4))
    start = time.perf_counter()
    try:
        NotebookClient(notebook, timeout=None, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        ok = True
    except CellExecutionError as error:
        print(error, file=sys.stderr)
        ok = False
    seconds = time.perf_counter() - start
    nbformat.write(notebook, out / path.name)
    return seconds, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder with the real CIFAR-10 (and cifar_test_nolabel.pkl); "
                                           "in smoke mode, default: $CIFAR_RESNET_DATA, else synthetic data")
    parser.add_argument("--preset", help="what notebook 03 trains (default: chosen by the hardware)")
    parser.add_argument("--smoke", action="store_true", help="smoke mode, to time the notebooks as the tests run them")
    parser.add_argument("--out", type=Path, default=EXECUTED, help=f"where the executed copies go (default {EXECUTED})")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only the notebooks whose names start so, e.g. 01 06; "
                                                               "the other notebooks' timings are kept")
    args = parser.parse_args(argv)
    if not (args.data or args.smoke):
        parser.error("--data is required: the executed copies come from real data (or time them with --smoke)")
    os.environ["CIFAR_RESNET_SMOKE"] = "1" if args.smoke else "0"
    if args.data:
        os.environ["CIFAR_RESNET_DATA"] = str(Path(args.data).resolve())
    if args.preset:
        os.environ["CIFAR_RESNET_PRESET"] = args.preset
    notebooks = [p for p in sorted(NOTEBOOKS.glob("0*.ipynb")) if not args.only or p.name.startswith(tuple(args.only))]
    run_dir = PROJECT / "runs" / "course"
    if run_dir.exists() and not args.smoke and any(p.name.startswith("03") for p in notebooks):
        run_dir.rename(run_dir.with_name(f"course.before-{datetime.datetime.now():%Y%m%d-%H%M%S}"))
    args.out.mkdir(parents=True, exist_ok=True)
    timings_file = args.out / "timings.json"
    kept = json.loads(timings_file.read_text()) if args.only and timings_file.is_file() else {}
    timings = kept.get("seconds", {}) if kept.get("smoke") == args.smoke else {}
    for path in notebooks:
        seconds, ok = execute(path, args.out)
        timings[path.name] = round(seconds, 1)
        print(f"{path.name:<45} {seconds / 60:6.1f} minutes{'' if ok else '  FAILED: see the executed copy'}",
              flush=True)
        if not ok:
            return 1
    timings_file.write_text(json.dumps(
        {"date": datetime.date.today().isoformat(), "smoke": args.smoke, "seconds": timings}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
