"""`qc bench faults`: the four fault scenarios with a few thousand reviews each, as figures.

Prints ``{"scenarios": [{"name", "sent", "stored", "lost", "duplicates", "recovery_s", ...}]}``
with --json (progress on stderr); exits 1 when any scenario lost or duplicated a review,
decided a part twice, or (the scenarios with a PLC) gave the PLC a result out of trigger order
or under another part's number.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qc.faults.scenarios import SCENARIOS, run_scenario


def main(args: Any) -> int:
    names = args.scenario or list(SCENARIOS)
    say = (lambda msg: None) if args.quiet else (
        lambda msg: print(f"bench faults: {msg}", file=sys.stderr, flush=True))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qc-bench-faults-"))
    results = []
    t0 = time.monotonic()
    try:
        for name in names:
            say(f"{name}: {args.reviews} reviews")
            results.append(run_scenario(name, args.reviews, work / name, say=say).to_json())
            r = results[-1]
            say(f"{name}: sent {r['sent']} stored {r['stored']} lost {r['lost']} duplicates {r['duplicates']} "
                f"recovery {r['recovery_s']} s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out = {"scenarios": results, "reviews_per_scenario": args.reviews, "wall_s": round(time.monotonic() - t0, 1)}
    if args.json:
        print(json.dumps(out))
    else:
        for r in results:
            print(f"{r['name']:>14}: sent {r['sent']:>6}  stored {r['stored']:>6}  lost {r['lost']}  "
                  f"duplicates {r['duplicates']}  recovery {r['recovery_s']:.2f} s  fault {r['fault']}")
    bad = any(r["lost"] or r["duplicates"] or r["parts_double_decided"] or r["unknown"] or _out_of_order(r)
              for r in results)
    return 1 if bad else 0


def _out_of_order(result: dict) -> bool:
    fault = result["fault"]
    return "in_trigger_order" in fault and (not fault["in_trigger_order"] or fault["actions_mismatched"] > 0)
