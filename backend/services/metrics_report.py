"""The printable weekly report (`run.py report --week 2026-W48 --out report.pdf`): the Metrics tab's numbers for one
ISO week, from the same queries (backend.services.metrics), drawn with matplotlib into a PDF.

Page 1: the week's totals (rollouts and success with its Wilson interval, interventions, help prompts, demos and
hours, labelling, jobs and their hours) and the leaderboard; page 2: success per day and model version with error
bars, demonstrations per operator, jobs by status.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.services.metrics import MetricsFilter, MetricsService
from vla_core.metrics import wilson_interval


def week_range(week: str) -> tuple[datetime, datetime]:
    """'2026-W48' -> (Monday 00:00 UTC, the next Monday); ValueError with the expected form otherwise."""
    try:
        year, number = week.upper().split("-W")
        start = datetime.fromisocalendar(int(year), int(number), 1).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"week must look like 2026-W48 (an ISO week), got {week!r}") from None
    return start, start + timedelta(days=7)


def weekly_summary(metrics: MetricsService, week: str, **filters) -> dict:
    """The report's numbers: totals over the week and the rows of its charts (daily periods)."""
    since, until = week_range(week)
    f = MetricsFilter(since=since, until=until, **filters)
    success = metrics.success_over_time(f, "day")
    n, k = sum(r["rollouts"] for r in success), sum(r["successes"] for r in success)
    interventions = metrics.interventions(f, "week")
    demos = metrics.demos(f, "day")
    jobs = metrics.jobs(f, "week")
    return {
        "week": week, "since": since.isoformat(), "until": until.isoformat(),
        "rollouts": n, "successes": k, "success_rate": k / n if n else None,
        "wilson_95": list(wilson_interval(k, n)) if n else None,
        "rollouts_with_intervention": sum(r["rollouts_with_intervention"] for r in interventions),
        "help_prompts": sum(r["help_prompts"] for r in interventions),
        "demos": sum(r["episodes"] for r in demos), "hours_recorded": sum(r["hours"] for r in demos),
        "annotation_events": sum(r["events"] for r in metrics.labeling(f, "week")),
        "jobs": sum(r["jobs"] for r in jobs), "cpu_hours": sum(r["cpu_hours"] for r in jobs),
        "gpu_hours": sum(r["gpu_hours"] for r in jobs),
        "charts": {"success": success, "leaderboard": metrics.leaderboard(f), "demos": demos, "jobs": jobs},
    }  # fmt: skip


def render_weekly_report(metrics: MetricsService, week: str, out: Path, **filters) -> dict:
    """Write the PDF to `out` (its folder must exist); returns the summary it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    s = weekly_summary(metrics, week, **filters)
    pct = lambda x: "—" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    with PdfPages(out) as pdf:
        fig = plt.figure(figsize=(8.27, 11.69))  # A4
        fig.text(0.08, 0.95, f"VLA Dashboard: week {week}", fontsize=18, weight="bold")
        fig.text(0.08, 0.925, f"{s['since'][:10]} to {s['until'][:10]} (UTC)", fontsize=10, color="#555")
        interval = "" if s["wilson_95"] is None else f" [{pct(s['wilson_95'][0])}, {pct(s['wilson_95'][1])}]"
        lines = [
            f"Rollouts: {s['rollouts']}, success {pct(s['success_rate'])}{interval} (Wilson 95%)",
            f"Rollouts with an intervention: {s['rollouts_with_intervention']}; help prompts: {s['help_prompts']}",
            f"Demonstrations: {s['demos']} ({s['hours_recorded']:.2f} h); annotation events: {s['annotation_events']}",
            f"Jobs: {s['jobs']}; CPU {s['cpu_hours']:.2f} h, GPU {s['gpu_hours']:.2f} h",
        ]
        for i, line in enumerate(lines):
            fig.text(0.08, 0.88 - 0.03 * i, line, fontsize=11)
        board = s["charts"]["leaderboard"]
        if board:
            ax = fig.add_axes([0.08, 0.25, 0.84, 0.45])
            ax.axis("off")
            ax.set_title("Leaderboard per evaluation suite", loc="left")
            cells = [
                [
                    r["suite"],
                    f"{r['model_name']} v{r['model_version']}",
                    r["rollouts"],
                    pct(r["success_rate"]),
                    f"[{pct(r['wilson_low'])}, {pct(r['wilson_high'])}]",
                    "★" if r["production"] else "",
                    "—" if r["significant"] is None else ("yes" if r["significant"] else "no"),
                ]
                for r in board[:25]
            ]
            table = ax.table(cells, colLabels=["suite", "model", "n", "success", "95%", "prod.", "vs prod. sig."],
                             loc="upper left")  # fmt: skip
            table.auto_set_font_size(False)
            table.set_fontsize(8)
        pdf.savefig(fig)
        plt.close(fig)

        fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(8.27, 11.69))
        series = defaultdict(list)
        for r in s["charts"]["success"]:
            series[f"{r['task']} {r['model_name']} v{r['model_version']} {r['kind']}"].append(r)
        for name, rows in series.items():
            y = [r["success_rate"] for r in rows]
            err = [[v - r["wilson_low"] for v, r in zip(y, rows, strict=True)],
                   [r["wilson_high"] - v for v, r in zip(y, rows, strict=True)]]  # fmt: skip
            a1.errorbar([r["period"] for r in rows], y, yerr=err, marker="o", capsize=3, label=name)
        a1.set(title="Success per day (Wilson 95%)", ylim=(0, 1))
        if series:
            a1.legend(fontsize=7)
        by_operator = defaultdict(int)
        for r in s["charts"]["demos"]:
            by_operator[r["operator"] or "—"] += r["episodes"]
        a2.bar(list(by_operator), list(by_operator.values()))
        a2.set(title="Demonstrations per operator")
        by_status = defaultdict(int)
        for r in s["charts"]["jobs"]:
            by_status[r["status"]] += r["jobs"]
        a3.bar(list(by_status), list(by_status.values()), color="#607d8b")
        a3.set(title="Jobs by status")
        fig.tight_layout()
        pdf.savefig(fig)
        plt.close(fig)
    return s
