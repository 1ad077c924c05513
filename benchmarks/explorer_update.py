"""How long one change in the parameter-budget explorer takes: a control moves, the network is counted
again (built on the 'meta' device, one image traced through it) and every output is redrawn.

Each change sets a width never seen before (nothing cached), then the same widths again (cached).
The explorer must stay interactive: well under 50 ms a change.
  python benchmarks/explorer_update.py                  # 40 changes of the reference preset
  python benchmarks/explorer_update.py --changes 3      # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from cifar_resnet.widgets import BudgetExplorer


def time_changes(explorer: BudgetExplorer, widths: list[int]) -> list[float]:
    """Milliseconds for each change of stage 2's width to the next of ``widths``."""
    times = []
    for width in widths:
        start = time.perf_counter()
        explorer.channels[1].value = width  # as a slider drag does: observe -> refresh
        times.append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--preset", default="reference")
    args = parser.parse_args()
    explorer = BudgetExplorer(args.preset)  # its first count pays the one-off start-up
    widths = [100 + i for i in range(args.changes)]
    fresh, cached = time_changes(explorer, widths), time_changes(explorer, widths)
    assert explorer.error.value == "", explorer.error.value
    for name, times in (("new configuration", fresh), ("seen before (cached)", cached)):
        print(f"{name:<22} median {statistics.median(times):6.1f} ms, max {max(times):6.1f} ms "
              f"over {len(times)} changes")
    print(json.dumps({"preset": args.preset, "changes": args.changes, "fresh_median_ms": statistics.median(fresh),
                      "fresh_max_ms": max(fresh), "cached_median_ms": statistics.median(cached)}))


if __name__ == "__main__":
    main()
