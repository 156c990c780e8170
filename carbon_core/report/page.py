"""Assemble the report's sections into one self-contained HTML page.

plotly.js is embedded once, inline; every figure is embedded as JSON; nothing is
fetched at view time. After Plotly has drawn, a small script writes each chart's
number of drawn marks into its `data-marks` attribute and a JSON summary into
the element with id `report-marks` (read by tests through headless Chromium).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from html import escape

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from carbon_core.report import charts
from carbon_core.report.data import TOP_ACCOUNTS, ReportData

MARKS_ELEMENT_ID = "report-marks"
FIGURES_ELEMENT_ID = "report-figures"
NOT_AVAILABLE = "not available: run <code>carbonlake run</code>"
FORECAST_BASES = ("mbm", "lbm")
TONNES_LABEL = "t CO2e"


@dataclass
class Chart:
    chart_id: str
    title: str
    figure: go.Figure
    wide: bool = False


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    charts: list[Chart] = field(default_factory=list)
    extra_html: str = ""
    unavailable: str | None = None


def _tonnes(kg: float) -> str:
    tonnes = kg / charts.KG_PER_TONNE
    # Small worlds (and single payers) would otherwise show 0.0.
    return f"{tonnes:,.1f}" if abs(tonnes) >= 100 else f"{tonnes:,.3g}"


def _month_label(month: dt.date) -> str:
    return f"{month:%b %Y}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _emissions_sections(data: ReportData) -> list[Section]:
    account_title = "Payers" if data.payer is None else "Linked accounts"
    if len(data.by_account) >= TOP_ACCOUNTS:
        account_title += f" (largest {TOP_ACCOUNTS})"
    sections = [
        Section(
            "time",
            "Emissions over time",
            "Scope 2 is shown location-based in the stacked bars; the lines compare "
            "the location-based (LBM) and market-based (MBM) totals.",
            [
                Chart("scopes", "By scope", charts.scopes_over_time(data.monthly)),
                Chart("lbm_mbm", "Location-based vs market-based", charts.lbm_vs_mbm(data.monthly)),
            ],
        ),
        Section(
            "breakdown",
            "Where the emissions come from",
            "Ranked by location-based emissions over the period.",
            [
                Chart(
                    "regions",
                    "By region",
                    charts.ranked_bars(
                        data.by_region,
                        data.by_region["region_code"] + " · " + data.by_region["location"],
                    ),
                ),
                Chart(
                    "services",
                    "By service",
                    charts.ranked_bars(data.by_service, data.by_service["product_code"]),
                ),
                Chart(
                    "accounts",
                    account_title,
                    charts.ranked_bars(data.by_account, data.by_account["account_id"]),
                ),
            ],
        ),
    ]
    if data.by_business_unit is None:
        sections[1].extra_html = f'<p class="na">By business unit: {NOT_AVAILABLE}</p>'
    else:
        sections[1].charts.append(
            Chart(
                "business_units",
                "By business unit",
                charts.ranked_bars(data.by_business_unit, data.by_business_unit["business_unit"]),
            )
        )
    return sections


def _unallocated_section(data: ReportData) -> Section:
    section = Section(
        "unallocated",
        "Unallocated by reason",
        "Operator emissions no customer account carries (idle capacity, missing "
        "usage...). Not part of the totals above.",
    )
    if data.payer is not None:
        section.intro = "Unallocated emissions belong to the operator, not to a payer."
        section.unavailable = "not part of a payer's report"
    elif data.unallocated is None:
        section.unavailable = NOT_AVAILABLE
    elif data.unallocated.empty:
        section.extra_html = "<p>Nothing was unallocated in this period.</p>"
    else:
        section.charts.append(
            Chart("unallocated", "Per month", charts.unallocated_by_reason(data.unallocated))
        )
    return section


def _coverage_section(data: ReportData) -> Section:
    scope = "the clusters this payer used" if data.payer else "all sites"
    section = Section(
        "coverage",
        "Data coverage",
        f"Site-month inputs of {scope}: how much energy was estimated rather than "
        "metered or invoiced, which grid-factor level resolved each site-month, and "
        "which months are still provisional.",
    )
    if data.coverage is None or data.factor_levels is None:
        section.unavailable = NOT_AVAILABLE
        return section
    estimated = charts.estimated_share(data.coverage)
    levels = charts.factor_levels(data.factor_levels)
    section.charts = [
        Chart("coverage_estimated", "Estimated energy share", estimated),
        Chart("coverage_levels", "Site-months per factor level", levels),
    ]
    flags = zip(data.coverage["month"], data.coverage["provisional"], strict=True)
    provisional = [_month_label(month) for month, flag in flags if flag]
    listing = ", ".join(provisional) if provisional else "none"
    section.extra_html = f"<p><strong>Provisional months:</strong> {escape(listing)}</p>"
    return section


def _efficiency_section(data: ReportData) -> Section:
    section = Section(
        "efficiency",
        "PUE and WUE per region",
        "Period ratios of sums per cluster (facility energy / IT energy; water / IT energy).",
    )
    if data.efficiency is None or data.efficiency.empty:
        section.unavailable = NOT_AVAILABLE
    else:
        section.charts = [Chart("efficiency", "", charts.efficiency(data.efficiency), wide=True)]
    return section


def _benchmark_section(data: ReportData) -> Section:
    section = Section(
        "benchmarks",
        "Greener regions per foundational service",
        "kg CO2e per unit of service over the period, lowest location-based intensity "
        "first. <strong>*</strong> and hatched bars: part of the cluster's energy was "
        "estimated, so its intensity is less certain.",
    )
    if data.intensity is None:
        section.unavailable = NOT_AVAILABLE
        return section
    if data.intensity.empty:
        section.extra_html = "<p>No foundational usage in this period.</p>"
    for index, (product, rows) in enumerate(data.intensity.groupby("product_code", sort=True)):
        unit = str(rows["allocation_unit"].iloc[0])
        section.charts.append(
            Chart(
                f"intensity_{index}",
                f"{product} (per {unit})",
                charts.service_intensity(rows, unit),
            )
        )
    return section


def _shared_units_note(data: ReportData) -> str:
    if not data.shared_target_units:
        return ""
    units = ", ".join(escape(u) for u in data.shared_target_units)
    return (
        "<p>Business units with a reduction target that also hold other payers' accounts: "
        f"{units}. Their progress is in the operator's report.</p>"
    )


def _targets_table(data: ReportData) -> str:
    if not data.targets:
        if data.payer is not None:
            return (
                "<p>No reduction target covers a business unit whose accounts are all this "
                "payer's.</p>" + _shared_units_note(data)
            )
        return "<p>No reduction targets configured (config <code>targets</code>).</p>"
    rows = []
    for progress in data.targets:
        allowed = progress.latest_path_kg
        rows.append(
            [
                escape(progress.business_unit),
                progress.basis.upper(),
                f"-{progress.reduction_percent:g} % by {progress.target_year} "
                f"vs {progress.baseline_year}",
                "—" if progress.baseline_kg is None else _tonnes(progress.baseline_kg),
                "—"
                if progress.latest_kg is None
                else f"{_tonnes(progress.latest_kg)} "
                f"({progress.latest_year}, {progress.latest_months} mo.)",
                "—" if allowed is None else _tonnes(allowed),
                escape(progress.status),
            ]
        )
    header = [
        "Business unit",
        "Basis",
        "Target",
        "Baseline t/yr",
        "Latest t/yr (annualised)",
        "Path t/yr",
        "Status",
    ]
    return _table(header, rows) + _shared_units_note(data)


def _forecast_section(data: ReportData) -> Section:
    section = Section(
        "forecast",
        "Forecast",
        "Monthly history (all months in the lake) and the forecast to the horizon with "
        "its interval band (series' bounds summed: a conservative band).",
    )
    if data.forecast is None:
        section.unavailable = NOT_AVAILABLE
        return section
    history = data.history if data.history is not None else data.monthly
    for basis in FORECAST_BASES:
        label = "Market-based" if basis == "mbm" else "Location-based"
        section.charts.append(
            Chart(
                f"forecast_{basis}",
                label,
                charts.forecast_fan(history, data.forecast, basis),
                wide=True,
            )
        )
    return section


def _targets_section(data: ReportData) -> Section:
    section = Section(
        "targets",
        "Reduction targets",
        "Each target against its own business unit's monthly total on the target's basis, "
        "one line per methodology version; the path is a straight line from the "
        "baseline-year total, drawn as monthly equivalents. A year under another "
        "methodology version than the baseline's is not compared with it.",
    )
    if data.targets is None:
        section.unavailable = NOT_AVAILABLE
        return section
    series = data.target_series
    for index, progress in enumerate(data.targets):
        if series is None or series.empty:
            break
        section.charts.append(
            Chart(f"target_{index}", progress.label, charts.target_path(series, progress))
        )
    section.extra_html = _targets_table(data)
    return section


def _backtest_section(data: ReportData) -> Section:
    section = Section(
        "backtest",
        "Forecast backtest",
        "Each series' last months were held out, forecast from the rest and compared "
        "(mean absolute percentage error).",
    )
    if data.backtest is None or data.backtest_medians is None:
        section.unavailable = NOT_AVAILABLE
        return section
    if data.backtest.empty:
        section.extra_html = "<p>No forecast series.</p>"
        return section
    section.charts = [Chart("backtest", "Series per MAPE bucket", charts.backtest(data.backtest))]

    def pct(value: float | None) -> str:
        return "—" if value is None or value != value else f"{float(value):.1f} %"  # NaN check

    rows = [
        [escape(str(r.method)), f"{int(r.series)}", pct(r.median_mape_lbm), pct(r.median_mape_mbm)]
        for r in data.backtest_medians.itertuples()
    ]
    section.extra_html = _table(["Method", "Series", "Median MAPE LBM", "Median MAPE MBM"], rows)
    return section


def build_sections(data: ReportData) -> list[Section]:
    """Every section of the report, in reading order."""
    return [
        *_emissions_sections(data),
        _unallocated_section(data),
        _coverage_section(data),
        _efficiency_section(data),
        _benchmark_section(data),
        _forecast_section(data),
        _targets_section(data),
        _backtest_section(data),
    ]


def _headline(data: ReportData) -> str:
    energy_mwh = float(data.monthly["energy_kwh"].sum()) / 1000.0
    water_m3 = float(data.monthly["water_l"].sum()) / 1000.0
    lbm, mbm = data.total_lbm_kg, data.total_mbm_kg
    cards = [
        ("kpi-total-lbm", "Location-based (LBM)", _tonnes(lbm), TONNES_LABEL, lbm),
        ("kpi-total-mbm", "Market-based (MBM)", _tonnes(mbm), TONNES_LABEL, mbm),
        ("kpi-energy", "Energy", f"{energy_mwh:,.1f}", "MWh", energy_mwh),
        ("kpi-water", "Water", f"{water_m3:,.1f}", "m³", water_m3),
    ]
    if data.unallocated is not None and not data.unallocated.empty:
        kg = float(data.unallocated["total_lbm_kg"].sum())
        cards.append(("kpi-unallocated", "Unallocated (LBM)", _tonnes(kg), TONNES_LABEL, kg))
    html = "".join(
        f'<div class="kpi" id="{cid}" data-value="{value!r}">'
        f'<div class="kpi-label">{escape(label)}</div><div class="kpi-value">{shown}</div>'
        f'<div class="kpi-unit">{escape(unit)}</div></div>'
        for cid, label, shown, unit, value in cards
    )
    return f'<section class="kpis">{html}</section>'


def _section_html(section: Section, figures: dict[str, dict]) -> str:
    parts = [f'<section class="block" id="section-{section.key}"><h2>{escape(section.title)}</h2>']
    if section.intro:
        parts.append(f'<p class="intro">{section.intro}</p>')
    if section.unavailable:
        parts.append(f'<p class="na">{section.unavailable}</p>')
    if section.charts:
        parts.append('<div class="grid">')
        for chart in section.charts:
            figures[chart.chart_id] = json.loads(chart.figure.to_json())
            wide = " wide" if chart.wide else ""
            title = f"<h3>{escape(chart.title)}</h3>" if chart.title else ""
            parts.append(
                f'<figure class="card{wide}">{title}<div class="chart" id="chart-{chart.chart_id}" '
                f'data-chart="{chart.chart_id}" data-marks=""></div></figure>'
            )
        parts.append("</div>")
    parts.append(section.extra_html)
    parts.append("</section>")
    return "".join(parts)


STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1f2933;
 font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{background:#12355b;color:#fff;padding:24px 40px}
header h1{margin:0 0 4px;font-size:24px;font-weight:600}
header .meta{opacity:.85}
main{max-width:1320px;margin:0 auto;padding:20px 40px 40px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:14px;margin-bottom:10px}
.kpi{background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.kpi-label{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#52606d}
.kpi-value{font-size:28px;font-weight:600;color:#12355b}
.kpi-unit{font-size:12px;color:#52606d}
.block{margin-top:26px}
.block h2{font-size:19px;margin:0 0 4px;color:#12355b}
.intro{margin:0 0 10px;color:#52606d;max-width:980px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}
.card{margin:0;background:#fff;border-radius:8px;padding:10px 12px;
 box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card.wide{grid-column:1/-1}
.card h3,.block h3{font-size:14px;margin:2px 4px 4px;color:#334e68}
.na{background:#fff;border-left:4px solid #9aa5b1;padding:10px 14px;color:#52606d;border-radius:4px}
table.data{border-collapse:collapse;background:#fff;margin-top:10px;font-size:13px;
 box-shadow:0 1px 3px rgba(0,0,0,.08)}
table.data th,table.data td{padding:6px 12px;border-bottom:1px solid #e4e7eb;text-align:left}
table.data th{background:#f0f4f8}
code{background:#e4e7eb;padding:1px 4px;border-radius:3px}
footer{color:#7b8794;font-size:12px;padding:0 40px 30px;max-width:1320px;margin:0 auto}
"""

# Counts the drawn SVG shapes in each chart's trace layers once Plotly has drawn.
MARKS_SCRIPT = """
(function(){
  var figures = JSON.parse(document.getElementById("%(figures)s").textContent);
  var config = {displaylogo:false, displayModeBar:false, responsive:true};
  function marks(div){
    var n = 0;
    div.querySelectorAll(".main-svg g.trace path").forEach(function(p){
      var d = p.getAttribute("d");
      if (d && d !== "M0,0Z" && d !== "M0,0") { n += 1; }
    });
    return n;
  }
  var pending = [];
  Object.keys(figures).forEach(function(id){
    var div = document.getElementById("chart-" + id);
    var fig = figures[id];
    pending.push(Plotly.newPlot(div, fig.data, fig.layout, config).then(function(){ return div; }));
  });
  Promise.all(pending).then(function(divs){
    var summary = {};
    divs.forEach(function(div){
      var n = marks(div);
      div.setAttribute("data-marks", String(n));
      summary[div.getAttribute("data-chart")] = n;
    });
    var out = document.getElementById("%(marks)s");
    out.textContent = JSON.stringify(summary);
    out.setAttribute("data-page-height", String(document.documentElement.scrollHeight));
    out.setAttribute("data-status", "done");
  });
})();
"""


def render_html(data: ReportData, *, generated_at: dt.datetime | None = None) -> str:
    """The complete report page as one string."""
    sections = build_sections(data)
    figures: dict[str, dict] = {}
    body = "".join(_section_html(s, figures) for s in sections)
    who = "Whole operator" if data.payer is None else f"Payer account {data.payer}"
    period = f"{_month_label(data.month_from)} – {_month_label(data.month_to)}"
    versions = ", ".join(data.model_versions) or "—"
    stamp = (generated_at or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    # "</" would end the inline script early; "<\\/" is the same JSON string.
    figures_json = json.dumps(figures, separators=(",", ":")).replace("</", "<\\/")
    script = MARKS_SCRIPT % {"figures": FIGURES_ELEMENT_ID, "marks": MARKS_ELEMENT_ID}
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>carbonlake report: {escape(who)}, {escape(period)}</title>"
        f"<style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f'<header><h1>Carbon emissions report</h1><div class="meta">{escape(who)} · '
        f"{escape(period)} · methodology {escape(versions)}</div></header><main>"
        f"{_headline(data)}{body}</main>"
        f"<footer>Generated by carbonlake on {stamp}. Self-contained: all scripts and data "
        "are embedded in this file.</footer>"
        f'<pre id="{MARKS_ELEMENT_ID}" hidden data-status="pending"></pre>'
        f'<script type="application/json" id="{FIGURES_ELEMENT_ID}">{figures_json}</script>'
        f"<script>{script}</script></body></html>"
    )
