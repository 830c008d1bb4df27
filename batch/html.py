"""report.html: one self-contained page (inline CSS and SVG, no scripts, fonts or links), so it
opens on a machine with no network."""

from html import escape
from typing import Any

from .report import PSI_MODERATE, PSI_SIGNIFICANT

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:980px;color:#1f2328;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid
#d0d7de;padding-bottom:.2em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #d0d7de;padding:.3em .7em;text-align:left}td.n{text-align:right;
font-variant-numeric:tabular-nums}th{background:#f6f8fa}.muted{color:#656d76}
.ok{color:#1a7f37}.warn{color:#9a6700}.bad{color:#cf222e;font-weight:600}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #d0d7de;border-radius:6px;
padding:.6em 1em;min-width:9em}.card b{display:block;font-size:1.4em}
ul.anomalies li{color:#cf222e}svg text{font-size:11px;fill:#1f2328}
"""


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(rows_cells) + "</tr>" for rows_cells in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: str, numeric: bool = False, css: str = "") -> str:
    classes = " ".join(c for c in ("n" if numeric else "", css) if c)
    return f'<td class="{classes}">{value}</td>' if classes else f"<td>{value}</td>"


def histogram_svg(
    edges: list[float],
    counts: list[int],
    width: int = 640,
    height: int = 220,
    what: str = "churn probability",
    digits: int = 2,
    red_from: float = 0.5,
) -> str:
    """Bars of a histogram as inline SVG (by default the churn probability's, its bars red
    from the decision threshold on)."""
    left, bottom, top = 48, 28, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'role="img" aria-label="histogram of {escape(what)}">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#656d76"/>',
        f'<text x="4" y="{top + 10}">{peak:,}</text><text x="4" y="{top + plot_h}">0</text>',
    ]
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x = left + i * bar_w
        colour = "#cf222e" if edges[i] >= red_from else "#0969da"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{edges[i]:.{digits}f}–'
            f"{edges[i + 1]:.{digits}f}: {count:,}</title></rect>"
        )
    for i in range(0, len(edges), 5):
        x = left + i * bar_w
        parts.append(f'<text x="{x - 8:.1f}" y="{height - 8}">{edges[i]:.{digits}f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any], title: str = "Churn batch report") -> str:
    run, s, dup = report["run"], report["summary"], report["duplicates"]
    cards = [
        ("rows in", _num(s["rows_in"])),
        ("scored", _num(s["rows_scored"])),
        ("rejected", _num(s["rows_rejected"])),
        ("churned", _num(s.get("churned"))),
        ("not churned", _num(s.get("not_churned"))),
        ("churn rate", _pct(s["churn_rate"])),
        ("mean confidence", _num(s["mean_confidence"])),
        ("duplicate rows", _num(dup["duplicate_rows"])),
    ]
    card_html = "".join(f'<div class="card">{escape(k)}<b>{v}</b></div>' for k, v in cards)
    if report["anomalies"]:
        items = "".join(f"<li>{escape(a['message'])}</li>" for a in report["anomalies"])
        anomalies = f'<ul class="anomalies">{items}</ul>'
    else:
        anomalies = '<p class="ok">None.</p>'
    levels = s["confidence_levels"]
    confidence = _table(
        ["level", "rows", "share"],
        [
            [_cell(k), _cell(_num(v), True), _cell(_pct(v / s["rows_scored"]), True)]
            for k, v in levels.items()
            if s["rows_scored"]
        ],
    )
    failures = _table(
        ["reason", "rows"],
        [[_cell(escape(r)), _cell(_num(c), True)] for r, c in report["failures_by_reason"].items()],
    )
    css = {"stable": "ok", "moderate": "warn", "significant": "bad", "insufficient_data": ""}
    drift = _table(
        ["feature", "PSI", "status", "mean (this run)", "mean (training)"],
        [
            [
                _cell(escape(name)),
                _cell(_num(d["psi"]), True),
                _cell(d["status"], css=css[d["status"]]),
                _cell(_num(d["mean"], 2), True),
                _cell(_num(d["training_mean"], 2), True),
            ]
            for name, d in report["drift"].items()
        ],
    )
    examples = _table(
        ["customer_id", "rows"],
        [[_cell(escape(i)), _cell(_num(c), True)] for i, c in dup["examples"].items()],
    )
    files = _table(
        ["file", "rows", "scored", "rejected"],
        [
            [_cell(escape(f)), *(_cell(_num(c[k]), True) for k in ("rows", "scored", "rejected"))]
            for f, c in report["files"].items()
        ],
    )
    hist = report["histogram"]
    checks = report.get("anomaly_checks", {})
    sample_note = (
        ""
        if checks.get("applied", True)
        else f'<p class="muted">Fewer than {_num(checks["min_rows_scored"])} rows scored: '
        "rates and drift are not checked (insufficient data).</p>"
    )
    ignored = report.get("ignored_columns") or []
    ignored_note = (
        f"<p>Columns ignored (not read by the model): {escape(', '.join(ignored))}.</p>"
        if ignored
        else ""
    )
    quality = _quality_html(report)
    candidate = candidate_html(report["candidate"]) if "candidate" in report else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p class="muted">model {escape(run["model"])} · as of {escape(run["as_of"])} ·
finished {escape(run["finished_at"])} · {_num(run["duration_s"], 1)} s ·
{_num(run["rows_per_second"], 0)} rows/s · engine {escape(run["engine"])}</p>
<div class="cards">{card_html}</div>
<h2>Anomalies</h2>{sample_note}{anomalies}{quality}
<h2>Churn probability</h2>{histogram_svg(hist["bin_edges"], hist["counts"])}
<p>Mean churn probability {_num(s["mean_churn_probability"])}; {_num(s["high_confidence"])}
high-confidence and {_num(s["low_confidence"])} low-confidence predictions.</p>
{candidate}<h2>Confidence</h2>{confidence}
<h2>Drift against the training data</h2>
<p class="muted">Population stability index per feature: below {PSI_MODERATE} stable,
{PSI_MODERATE}–{PSI_SIGNIFICANT} moderate, {PSI_SIGNIFICANT} and above significant.</p>{drift}
<h2>Validation failures by reason</h2>{failures if report["failures_by_reason"] else "<p>None.</p>"}
<h2>Duplicate customer ids</h2>
<p>{_num(dup["duplicated_ids"])} ids appear more than once ({_num(dup["duplicate_rows"])}
extra rows).</p>{examples if dup["examples"] else ""}
<h2>Inputs</h2>{files}{ignored_note}
</body></html>
"""


def _quality_html(report: dict[str, Any]) -> str:
    """The batch report's rejected and missing shares against their thresholds, and its output
    checks as a list (the drift report has neither)."""
    if "quality" not in report:
        return ""
    q = report["quality"]
    limit = q["max_null_share"]
    nulls = _table(
        ["column", "missing", "share", "threshold"],
        [
            [
                _cell(escape(c)),
                _cell(_num(q["null_counts"][c]), True),
                _cell(_pct(v), True, "bad" if v is not None and v > limit else ""),
                _cell(_pct(limit), True),
            ]
            for c, v in q["null_shares"].items()
        ],
    )
    over = q["rejected_share"] is not None and q["rejected_share"] > q["max_reject_share"]
    checks = "".join(
        f'<li class="{"ok" if c["passed"] else "bad"}">{"pass" if c["passed"] else "FAIL"}'
        f" {escape(c['name'])}: {escape(c['detail'])}</li>"
        for c in report.get("output_checks", [])
    )
    return (
        f'<h2>Data quality</h2><p>Rejected share <span class="{"bad" if over else "ok"}">'
        f"{_pct(q['rejected_share'])}</span> (threshold {_pct(q['max_reject_share'])}). "
        f"Missing values per input column, of {_num(q['records'])} records:</p>{nulls}"
        f'<h2>Output checks</h2><ul class="checks">{checks}</ul>'
    )


def candidate_html(c: dict[str, Any]) -> str:
    """The backtest: the comparison with its verdict, the |Δp| histogram, the labels' metrics."""
    cmp, t = c["comparison"], c["comparison"]["table"]
    figures = [
        ("pairs", _num(cmp["pairs"])),
        ("agreement", _pct(cmp["agreement"])),
        ("mean |Δp|", _num(cmp["mean_abs_delta"], 4)),
        ("p95 |Δp|", _num(cmp["p95_abs_delta"], 4)),
        ("max |Δp|", _num(cmp["max_abs_delta"], 4)),
        ("PSI", _num(cmp["psi"], 4)),
    ]
    cards = "".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in figures)
    table = _table(
        ["served \\ candidate", "not churn", "churn"],
        [
            [_cell(name), *(_cell(_num(t[f"served_{s}_candidate_{k}"]), True) for k in (0, 1))]
            for s, name in ((0, "not churn"), (1, "churn"))
        ],
    )
    css = {"promote": "ok", "hold": "warn", "reject": "bad"}[c["verdict"]]
    why = f" ({escape('; '.join(c['reasons']))})" if c["reasons"] else ""
    hist = c["abs_delta_histogram"]
    svg = histogram_svg(hist["bin_edges"], hist["counts"], what="|Δp|", digits=3, red_from=2.0)
    return (
        f"<h2>Candidate {escape(c['candidate'])} against {escape(c['served'])}</h2>"
        f'<p>Verdict <span class="{css}">{escape(c["verdict"])}</span>{why}; decisions at '
        f'{_num(cmp["threshold"], 2)}:</p><div class="cards">{cards}</div>{table}'
        f"<p>|Δp|, the change in churn probability per customer:</p>{svg}"
        + (_labels_html(c["labels"]) if "labels" in c else "")
    )


def _labels_html(lab: dict[str, Any]) -> str:
    rows = [
        [_cell(escape(name)), *(_cell(_num(m[k], 4), True) for k in _METRIC_KEYS)]
        for name, m in lab["metrics"].items()
    ]
    boot = lab.get("bootstrap", {})
    return (
        f"<h2>On labelled customers</h2><p>{_num(lab['customers'])} labelled customers scored "
        f"({_num(lab['churned'])} churned); {_num(lab['scored_without_label'])} scored rows "
        f"without a label, {_num(lab['labels_not_scored'])} labels of customers not scored. "
        f"Difference: candidate − served, with a paired bootstrap 95% interval "
        f"({_num(boot.get('resamples'))} resamples, seed {boot.get('seed', '–')}).</p>"
        + _table(["metric", "served", "candidate", "difference", "95% low", "95% high"], rows)
    )


_METRIC_KEYS = ("served", "candidate", "difference", "ci95_low", "ci95_high")
