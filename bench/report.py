"""Medians, ratios against the baselines, targets; the table, the JSON and the chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.common import OURS, PEER, RAW, Workload
from bench.postgres import OURS_PG, PEER_PG, RAW_PG

# Each of our rows against its raw and peer counterpart, and the target (a minimum
# ratio to the peer row), if any.
COMPARISONS: dict[str, tuple[str, str, float | None]] = {
    "persist": ("raw_tx1", "es_save_1", 1.0),
    "persist_all": ("raw_tx50", "es_save_100", 1.0),
    "persist_async": ("raw_tx50", "es_save_100", 1.0),
    "persist_all_async": ("raw_tx50", "es_save_100", None),
    "persist_group10": ("raw_tx1", "es_save_1", None),
    "persist_group100": ("raw_tx1", "es_save_1", 3.0),
    "recovering": ("raw_read", "es_replay", 3.0),
    # PostgreSQL (issue 13): against asyncpg alone and eventsourcing's PostgreSQL recorder.
    "pg_persist": ("raw_pg_tx1", "es_pg_save_1", None),
    "pg_persist_all": ("raw_pg_unnest100", "es_pg_save_100", None),
    "pg_persist_async": ("raw_pg_unnest100", "es_pg_save_100", None),
    "pg_persist_group10": ("raw_pg_tx1", "es_pg_save_1", None),
    "pg_persist_group100": ("raw_pg_tx1", "es_pg_save_1", 3.0),
    "pg_recovering": ("raw_pg_read", "es_pg_replay", 3.0),
}
# Targets against the raw row instead (a minimum ratio to it).
RAW_TARGETS: dict[str, float] = {"pg_persist_all": 0.5}
# Service rows (issue 11): row -> (baseline row in the same run, minimum ratio of the rates).
SERVICE_TARGETS: dict[str, tuple[str, float]] = {
    "service_async": ("raw_tx1", 5.0),
    "service_threads": ("raw_tx1", 3.0),
    # multiproc-tcp's default config (shared host processes, one per CPU); its
    # one-process-per-cart twin, service_async_mp_isolated, has no target (a comparison).
    "service_async_mp": ("raw_tx1", 2.0),
    "service_async_10k": ("service_async", 0.8),
    "create_10k": ("create_100", 0.8),
    # Entities (issue 12).
    "entities_async": ("raw_tx1", 5.0),
    "entities_async_mp": ("raw_tx1", 3.0),
}
SNAPSHOT_PAIR = ("snapshot_1m", "snapshot_10")
SNAPSHOT_TARGET = 3.0  # the 1M-event actor recovers within this many times the 10-event one


def summarize(rows: list[Workload]) -> dict[str, Any]:
    """Per-row medians and every ratio and target verdict, as a JSON-ready dict."""
    out: dict[str, dict[str, Any]] = {}
    for w in rows:
        if not w.samples:
            continue
        median = statistics.median(w.samples)
        entry: dict[str, Any] = {
            "group": w.group, "label": w.label, "events": w.events, "unit": w.unit,
            "seconds": w.samples, "median_seconds": median, "notes": w.notes,
        }
        if w.unit == "ms":
            entry["median_ms"] = median * 1000
        else:
            entry["events_per_s"] = w.events / median
            entry["rounds_events_per_s"] = [w.events / s for s in w.samples]
        if w.latencies:
            ordered = sorted(w.latencies)
            entry["p50_ms"] = ordered[len(ordered) // 2] * 1000
            entry["p99_ms"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        out[w.key] = entry
    for key, (base, minimum) in SERVICE_TARGETS.items():
        if key in out and base in out:
            entry = out[key]
            entry["vs_raw"] = base
            entry["ratio_raw"] = entry["events_per_s"] / out[base]["events_per_s"]
            entry["target"] = f">= {minimum:g}x {base}"
            entry["met"] = entry["ratio_raw"] >= minimum
    for key, (raw, peer, target) in COMPARISONS.items():
        if key not in out:
            continue
        entry = out[key]
        for name, base in (("raw", raw), ("peer", peer)):
            if base in out:
                entry[f"vs_{name}"] = base
                entry[f"ratio_{name}"] = entry["events_per_s"] / out[base]["events_per_s"]
        if target is not None:
            entry["target"] = f">= {target:g}x {peer}"
            entry["met"] = entry.get("ratio_peer", 0.0) >= target if peer in out else None
    for key, minimum in RAW_TARGETS.items():
        if key in out and "ratio_raw" in out[key]:
            entry = out[key]
            entry["target"] = f">= {minimum:g}x {entry['vs_raw']}"
            entry["met"] = entry["ratio_raw"] >= minimum
    long, short = SNAPSHOT_PAIR
    if long in out and short in out:
        ratio = out[long]["median_seconds"] / out[short]["median_seconds"]
        out[long]["ratio_time_vs"] = short
        out[long]["ratio_time"] = ratio
        out[long]["target"] = f"<= {SNAPSHOT_TARGET:g}x the time of {short}"
        out[long]["met"] = ratio <= SNAPSHOT_TARGET
    return out


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def table(rows: dict[str, Any]) -> str:
    """A Markdown table: one line per row, our rows with their ratios and targets."""
    lines = [
        "| workload | events/s (median) | rounds (min..max) | vs raw | vs eventsourcing "
        "| target | met |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for key, r in rows.items():
        if r["unit"] == "ms":
            ms = [s * 1000 for s in r["seconds"]]
            value = f"{r['median_ms']:,.1f} ms"
            spread = f"{min(ms):,.1f}..{max(ms):,.1f} ms"
        else:
            rates = r["rounds_events_per_s"]
            value = _fmt_rate(r["events_per_s"])
            spread = f"{_fmt_rate(min(rates))}..{_fmt_rate(max(rates))}"
            if "p99_ms" in r:
                spread += f"; p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        vs_raw = f"{r['ratio_raw']:.2f}x `{r['vs_raw']}`" if "ratio_raw" in r else ""
        vs_peer = f"{r['ratio_peer']:.2f}x `{r['vs_peer']}`" if "ratio_peer" in r else ""
        if "ratio_time" in r:
            vs_peer = f"{r['ratio_time']:.2f}x the time of `{r['ratio_time_vs']}`"
        target = r.get("target", "")
        met = {True: "yes", False: "**no**", None: "n/a"}[r["met"]] if "met" in r else ""
        lines.append(f"| `{key}` {r['label']} | {value} | {spread} | {vs_raw} | {vs_peer} "
                     f"| {target} | {met} |")
    return "\n".join(lines)


def chart(rows: dict[str, Any], path: Path, title: str) -> None:
    """Draw the rates (log scale) and the snapshot recovery times as a PNG."""
    import matplotlib  # noqa: PLC0415 - optional extra, loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    colours = {OURS: "#2a6fb0", RAW: "#8c8c8c", PEER: "#d98b2b", OURS_PG: "#5b9bd5",
               RAW_PG: "#b5b5b5", PEER_PG: "#f0b46a"}
    rates = [(k, r) for k, r in rows.items() if r["unit"] != "ms"]
    times = [(k, r) for k, r in rows.items() if r["unit"] == "ms"]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 0.42 * len(rates) + 0.5 * len(times) + 2.5),
        gridspec_kw={"height_ratios": [max(len(rates), 1), max(len(times), 1) + 0.6]})
    labels = [k for k, _ in rates][::-1]
    values = [r["events_per_s"] for _, r in rates][::-1]
    top.barh(labels, values, color=[colours[r["group"]] for _, r in rates][::-1])
    top.set_xscale("log")
    top.set_xlabel("events/s (median, log scale; higher is better)")
    for y, v in enumerate(values):
        top.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    top.set_xlim(right=max(values) * 6)
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    top.legend(handles, list(colours), loc="lower right", fontsize=8)
    top.set_title(title, fontsize=10)
    if times:
        tl = [k for k, _ in times][::-1]
        tv = [r["median_ms"] for _, r in times][::-1]
        bottom.barh(tl, tv, color=colours[OURS])
        bottom.set_xlabel("recovery time, ms (median; lower is better)")
        for y, v in enumerate(tv):
            bottom.text(v, y, f" {v:,.1f} ms", va="center", fontsize=8)
        bottom.set_xlim(right=max(tv) * 1.4)
    else:
        bottom.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
