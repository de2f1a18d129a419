"""Benchmark reconciliation: its requests against a full re-pull's, on an account with ~5% of records changed.

    .venv/bin/python bench/bench_reconcile.py                       # large scale, 5% changed, 30-day slices
    .venv/bin/python bench/bench_reconcile.py --scale small --changed-percent 5

The sandbox runs in its own subprocess (`python -m orderspace_sandbox`, seed 42) with no webhook subscription,
so every change event is dropped: only reconciliation can bring the lake back. Steps, each command a real
`orderspace-pipelines` subprocess and every request counted by the sandbox (`/_sandbox/stats`):

1. `sync` lands the whole account in lake A (the first full pull's requests);
2. activity mode (`POST /_sandbox/activity`) makes random changes (new orders, status changes, invoices,
   payments, dispatches, stock, edits, deletions) until at least `--changed-percent` of the account's
   records differ from lake A (measured by `orderspace_devtools.lake_diff`: parent records missing, extra or
   differing, over the account's parent records);
3. lake A is copied to lake A'; `reconcile --sweep-days S` runs on lake A until its sweep cycle is complete
   (C runs; the first is the cycle's start), each run's printed cost checked against the sandbox's count,
   and lake A is compared with the account after the first run and after the cycle;
4. `reconcile --full-cycle` runs once on lake A' (everything in one run);
5. `sync` into an empty lake B: the full re-pull's requests; lake B compared with the account.

The staleness arithmetic uses the schedule's interval T = 1 h: updates within T + one run's wall time,
deletions of closed records within C * T + one run's wall time, with C measured (and computed from H, the
days of history, and S). Results go to bench/results/reconcile-<timestamp>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from orderspace_devtools.lake_diff import LakeDiff, diff_lake, truth_from_sandbox
from orderspace_pipelines.endpoints import PULLED
from orderspace_pipelines.lake import storage

RESULTS = Path(__file__).resolve().parent / "results"
PARENTS = [endpoint.table for endpoint in PULLED]
INTERVAL_HOURS = 1.0  # reconcile_schedule: hourly


def _cli(env: dict[str, str], *args: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orderspace_pipelines.cli", *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout, wall


class Sandbox:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=600)
        self.base_url = base_url

    def reset(self) -> None:
        self.http.post("/_sandbox/reset-stats").raise_for_status()

    def requests(self) -> int:
        return int(self.http.get("/_sandbox/stats").json()["requests"])

    def activity(self, changes: int) -> None:
        self.http.post("/_sandbox/activity", json={"changes": changes}).raise_for_status()


def changed_share(diff: LakeDiff) -> tuple[float, int, int]:
    """(share, parent records that differ, parent records in the account)."""
    differ = sum(
        len(t.missing) + len(t.extra) + len(t.differing) for n, t in diff.tables.items() if n in PARENTS
    )
    total = sum(t.truth_rows for n, t in diff.tables.items() if n in PARENTS)
    return differ / max(total, 1), differ, total


def _counted(sandbox: Sandbox, env: dict[str, str], *args: str) -> dict[str, Any]:
    """One CLI command with the sandbox's request count around it."""
    sandbox.reset()
    out, wall = _cli(env, *args)
    counted = sandbox.requests()
    printed = re.findall(r"^API requests: (\d+)$", out, flags=re.MULTILINE)
    return {
        "requests": counted,
        "printed": int(printed[-1]) if printed else None,
        "wall_s": round(wall, 1),
        "out": out,
    }


def _removed(out: str) -> dict[str, int]:
    return {
        m[0]: int(m[2]) for m in re.findall(r"^  (\w+)\s+(\d+) changed\s+(\d+) removed$", out, re.MULTILINE)
    }


def _changed(out: str) -> dict[str, int]:
    return {
        m[0]: int(m[1]) for m in re.findall(r"^  (\w+)\s+(\d+) changed\s+(\d+) removed$", out, re.MULTILINE)
    }


def make_changes(sandbox: Sandbox, lake: Path, target: float) -> dict[str, Any]:
    """Activity until at least `target` of the account's parent records differ from the lake."""
    _, _, total = changed_share(diff_lake(lake, truth_from_sandbox(sandbox.base_url)))
    steps, batch = 0, max(10, int(total * target / 2))  # a change touches about two records
    while True:
        sandbox.activity(batch)
        steps += batch
        share, differ, total = changed_share(diff_lake(lake, truth_from_sandbox(sandbox.base_url)))
        print(f"  {steps} activity changes: {differ}/{total} records differ ({share:.2%})", flush=True)
        if share >= target:
            return {"activity_changes": steps, "records_differing": differ, "records": total, "share": share}
        batch = max(max(5, total // 1000), int(steps * (target / max(share, 1e-6) - 1) * 1.02))


def run(scale: str, target: float, sweep_days: int, rate_limit: int) -> dict[str, Any]:
    from orderspace_devtools.local_stack import sandbox_process

    args = ["--port", "0", "--scale", scale, "--seed", "42", "--rate-limit", str(rate_limit)]
    with sandbox_process(*args, timeout=900) as proc, tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox(proc.base_url)
        base = {
            **os.environ,
            "ORDERSPACE_CLIENT_ID": "sandbox-client",
            "ORDERSPACE_CLIENT_SECRET": "sandbox-secret",
            "ORDERSPACE_API_URL": proc.api_url,
            "ORDERSPACE_TOKEN_URL": proc.token_url,
            "ORDERSPACE_REQUESTS_PER_MINUTE": str(rate_limit),
            "ORDERSPACE_RATE_WINDOW_SECONDS": "60",
            "ORDERSPACE_THROTTLE_DB": str(Path(tmp) / "throttle.sqlite"),
        }
        base.pop("DAGSTER_HOME", None)
        lake_a, lake_a2, lake_b = (Path(tmp) / name for name in ("lake_a", "lake_a2", "lake_b"))
        env_a = base | {"ORDERSPACE_DATA_DIR": str(lake_a)}
        print("full pull into lake A", flush=True)
        first_pull = _counted(sandbox, env_a, "sync")
        print(f"  {first_pull['requests']} requests, {first_pull['wall_s']} s", flush=True)
        changes = make_changes(sandbox, lake_a, target)
        shutil.copytree(lake_a, lake_a2)
        runs = reconcile_cycle(sandbox, env_a, lake_a, sweep_days)
        print("reconcile --full-cycle on a copy", flush=True)
        full_cycle = _counted(
            sandbox, base | {"ORDERSPACE_DATA_DIR": str(lake_a2)}, "reconcile", "--full-cycle"
        )
        full_cycle_equal = diff_lake(lake_a2, truth_from_sandbox(sandbox.base_url)).equal
        print("full re-pull into an empty lake B", flush=True)
        repull = _counted(sandbox, base | {"ORDERSPACE_DATA_DIR": str(lake_b)}, "sync")
        repull_equal = diff_lake(lake_b, truth_from_sandbox(sandbox.base_url)).equal
        history_days = _history_days(lake_a)
    return summarise(
        scale, sweep_days, rate_limit, first_pull, changes, runs, full_cycle, full_cycle_equal, repull,
        repull_equal, history_days,
    )  # fmt: skip


def _history_days(lake: Path) -> int:
    oldest = min(storage.stored_days(lake, table)[0] for table in ("orders", "invoices", "dispatches"))
    return (datetime.now(UTC).date() - oldest).days


def reconcile_cycle(
    sandbox: Sandbox, env: dict[str, str], lake: Path, sweep_days: int
) -> list[dict[str, Any]]:
    """`reconcile` runs until the sweep's cycle is complete; lake A compared after the first and the last."""
    runs: list[dict[str, Any]] = []
    cycle = None
    while cycle is None or len(runs) < cycle:
        result = _counted(sandbox, env, "reconcile", "--sweep-days", str(sweep_days))
        match = re.search(r"a cycle of (\d+) runs", result["out"])
        cycle = cycle or (int(match[1]) if match else 1)
        result["removed"] = _removed(result["out"])
        result["changed"] = _changed(result["out"])
        slice_text = re.search(r"sweep slice (.+?) \(", result["out"])
        result["slice"] = slice_text[1] if slice_text else ""
        spent = re.search(r"^  requests: (.*)$", result["out"], flags=re.MULTILINE)
        result["requests_per_listing"] = spent[1] if spent else ""
        if not runs:
            diff = diff_lake(lake, truth_from_sandbox(sandbox.base_url))
            share, differ, _ = changed_share(diff)
            result["after"] = {"records_differing": differ, "share": share, "tables": diff.unequal()}
            result["after_kinds"] = {
                name: {"missing": len(t.missing), "extra": len(t.extra), "differing": len(t.differing)}
                for name, t in diff.tables.items()
                if not t.equal
            }
        del result["out"]
        runs.append(result)
        print(f"  reconcile run {len(runs)}/{cycle}: {result['requests']} requests, {result['wall_s']} s, "
              f"slice {result['slice']}", flush=True)  # fmt: skip
    runs[-1]["after_cycle_equal"] = diff_lake(lake, truth_from_sandbox(sandbox.base_url)).equal
    return runs


def summarise(
    scale: str,
    sweep_days: int,
    rate_limit: int,
    first_pull: dict[str, Any],
    changes: dict[str, Any],
    runs: list[dict[str, Any]],
    full_cycle: dict[str, Any],
    full_cycle_equal: bool,
    repull: dict[str, Any],
    repull_equal: bool,
    history_days: int,
) -> dict[str, Any]:
    cycle = len(runs)
    floor = min(run["requests"] for run in runs[1:]) if cycle > 1 else runs[0]["requests"]
    last_removal = max((i for i, run in enumerate(runs) if any(run["removed"].values())), default=0)
    slowest = max(run["wall_s"] for run in runs)
    return {
        "scale": scale,
        "sweep_days": sweep_days,
        "rate_limit_per_minute": rate_limit,
        "first_full_pull": {k: first_pull[k] for k in ("requests", "wall_s")},
        "changes": changes,
        "reconcile_runs": runs,
        "first_run_requests": runs[0]["requests"],
        "printed_equals_counted": all(run["printed"] == run["requests"] for run in runs)
        and full_cycle["printed"] == full_cycle["requests"],
        "cycle_runs": cycle,
        "cycle_runs_formula": -(-(history_days + 1) // sweep_days),
        "history_days": history_days,
        "cycle_total_requests": sum(run["requests"] for run in runs),
        "run_floor_requests": floor,
        "last_run_with_a_removal": last_removal + 1,
        "lake_equal_after_cycle": runs[-1]["after_cycle_equal"],
        "full_cycle_run": {"requests": full_cycle["requests"], "wall_s": full_cycle["wall_s"]},
        "full_cycle_equal": full_cycle_equal,
        "full_repull": {"requests": repull["requests"], "wall_s": repull["wall_s"]},
        "full_repull_equal": repull_equal,
        "staleness_hours": {
            "updates": f"{INTERVAL_HOURS:g} h + one run (slowest run measured: {slowest} s)",
            "deletions_of_closed_records": f"C x T = {cycle} x {INTERVAL_HOURS:g} h = "
            f"{cycle * INTERVAL_HOURS:g} h + one run (a deletion was last found in run {last_removal + 1} "
            f"of {cycle})",
        },
    }


def to_markdown(result: dict[str, Any]) -> str:
    r = result
    runs = r["reconcile_runs"]
    lines = [
        f"# Reconcile vs full re-pull ({r['scale']} scale, seed 42)",
        "",
        f"Account: {r['changes']['records']:,} parent records; {r['changes']['activity_changes']:,} "
        f"activity changes made {r['changes']['records_differing']:,} of them ({r['changes']['share']:.2%}) "
        "differ from the lake (lake_diff: missing + extra + differing parent records). No webhook "
        f"subscription: every change event dropped. Budget {r['rate_limit_per_minute']:,} requests/min "
        "(requests are counted by the sandbox, `/_sandbox/stats`; the budget only sets the wall time).",
        "",
        "| what | requests | wall s | lake equals the account after it |",
        "|---|---|---|---|",
        f"| full re-pull (`sync` into an empty lake) | {r['full_repull']['requests']} | "
        f"{r['full_repull']['wall_s']} | {r['full_repull_equal']} |",
        f"| reconcile, one scheduled run (the first after the changes, {r['sweep_days']}-day slice) | "
        f"{runs[0]['requests']} | {runs[0]['wall_s']} | updates yes; left: "
        f"{runs[0]['after']['records_differing']} records "
        f"({', '.join(runs[0]['after']['tables']) or 'none'}) |",
        "| reconcile, a run with nothing changed (floor, smallest of runs 2..C) | "
        f"{r['run_floor_requests']} | | |",
        f"| reconcile, the whole cycle (C = {r['cycle_runs']} runs) | {r['cycle_total_requests']} | "
        f"{sum(run['wall_s'] for run in runs):.1f} | {r['lake_equal_after_cycle']} |",
        f"| `reconcile --full-cycle` (one run, every slice) | {r['full_cycle_run']['requests']} | "
        f"{r['full_cycle_run']['wall_s']} | {r['full_cycle_equal']} |",
        "",
        f"Printed cost equals the sandbox's count on every run: {r['printed_equals_counted']}. "
        f"First full pull: {r['first_full_pull']['requests']} requests.",
        "",
        f"Staleness with every webhook lost (T = 1 h, S = {r['sweep_days']} days, H = {r['history_days']} "
        f"days of history, C = ceil((H + 1) / S) = {r['cycle_runs_formula']}, measured {r['cycle_runs']}): "
        f"updates {r['staleness_hours']['updates']}; deletions of closed records "
        f"{r['staleness_hours']['deletions_of_closed_records']}.",
        "",
        "Per run: requests, wall s, slice, records changed / removed per table",
        "",
    ]
    for i, run in enumerate(runs, 1):
        lines.append(
            f"- run {i}: {run['requests']} requests, {run['wall_s']} s, slice {run['slice']}, "
            f"changed {run['changed']}, removed {run['removed']}"
        )
        lines.append(f"  - requests per listing: {run.get('requests_per_listing', '')}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="large", choices=["tiny", "small", "large"])
    parser.add_argument("--changed-percent", type=float, default=5.0)
    parser.add_argument("--sweep-days", type=int, default=30)
    parser.add_argument("--rate-limit", type=int, default=1_000_000, help="requests per minute (both sides)")
    args = parser.parse_args()
    result = run(args.scale, args.changed_percent / 100, args.sweep_days, args.rate_limit)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"reconcile-{stamp}.json").write_text(json.dumps(result, indent=1, default=str))
    report = to_markdown(result)
    (RESULTS / f"reconcile-{stamp}.md").write_text(report)
    print(report)
    ok = result["lake_equal_after_cycle"] and result["full_cycle_equal"] and result["printed_equals_counted"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
