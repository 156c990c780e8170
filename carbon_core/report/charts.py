"""Plotly figures of the report, one function per chart, from the small aggregate frames."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from carbon_core.report.aggregates import MAPE_BUCKETS, MAPE_MISSING, MAPE_OVER
from carbon_core.report.data import TargetProgress

KG_PER_TONNE = 1000.0
TONNES = "t CO2e"
HEIGHT = 360

# A colour-blind-safe palette (Okabe-Ito), fixed per meaning across charts.
LBM_COLOUR = "#0072B2"
MBM_COLOUR = "#E69F00"
SCOPE_COLOURS = {"Scope 1": "#D55E00", "Scope 2 (location-based)": "#0072B2", "Scope 3": "#999999"}
SERIES_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
ESTIMATED_PATTERN = "/"


def _tonnes(values: pd.Series) -> list[float]:
    return [float(v) / KG_PER_TONNE for v in values.fillna(0.0)]


def _months(values: pd.Series) -> list[str]:
    return [pd.Timestamp(v).strftime("%Y-%m-%d") for v in values]


def _layout(fig: go.Figure, *, height: int = HEIGHT, y_title: str = "", x_title: str = "") -> None:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hoverlabel={"namelength": -1},
    )
    if y_title:
        fig.update_yaxes(title_text=y_title)
    if x_title:
        fig.update_xaxes(title_text=x_title)


def _month_axis(fig: go.Figure) -> None:
    fig.update_xaxes(type="date", tickformat="%b %Y", dtick="M1")
    fig.update_layout(hovermode="x unified")


def scopes_over_time(monthly: pd.DataFrame) -> go.Figure:
    """Stacked monthly bars: scope 1, scope 2 (location-based), scope 3."""
    fig = go.Figure()
    x = _months(monthly["month"])
    for name, column in (
        ("Scope 1", "scope1_kg"),
        ("Scope 2 (location-based)", "scope2_lbm_kg"),
        ("Scope 3", "scope3_kg"),
    ):
        fig.add_bar(x=x, y=_tonnes(monthly[column]), name=name, marker_color=SCOPE_COLOURS[name])
    fig.update_layout(barmode="stack")
    _layout(fig, y_title=TONNES)
    _month_axis(fig)
    return fig


# (legend name, gold column, colour) of the two Scope 2 methods' totals.
_METHODS: tuple[tuple[str, str, str], ...] = (
    ("Location-based (LBM)", "total_lbm_kg", LBM_COLOUR),
    ("Market-based (MBM)", "total_mbm_kg", MBM_COLOUR),
)


def lbm_vs_mbm(monthly: pd.DataFrame) -> go.Figure:
    """Monthly totals under the location-based and the market-based method."""
    fig = go.Figure()
    x = _months(monthly["month"])
    for name, column, colour in _METHODS:
        fig.add_scatter(
            x=x,
            y=_tonnes(monthly[column]),
            name=name,
            mode="lines+markers",
            line={"color": colour, "width": 3},
        )
    _layout(fig, y_title=TONNES)
    _month_axis(fig)
    fig.update_yaxes(rangemode="tozero")
    return fig


def ranked_bars(frame: pd.DataFrame, label: pd.Series, *, max_height: int = 640) -> go.Figure:
    """Horizontal LBM and MBM bars, largest LBM at the top."""
    labels = list(label)
    fig = go.Figure()
    for name, column, colour in _METHODS:
        fig.add_bar(
            y=labels, x=_tonnes(frame[column]), name=name, orientation="h", marker_color=colour
        )
    height = min(max_height, max(HEIGHT, 90 + 34 * len(labels)))
    fig.update_layout(barmode="group", bargap=0.25)
    _layout(fig, height=height, x_title=TONNES)
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def _column(name: str, convert: Callable[[pd.Series], Any]) -> Callable[[pd.DataFrame], Any]:
    """A function of a series' rows: one column, converted (e.g. kg to tonnes)."""
    return lambda rows: convert(rows[name])


def _stacked_monthly(
    frame: pd.DataFrame,
    by: str,
    values: Callable[[pd.DataFrame], Any],
    *,
    y_title: str,
    **bar: Callable[[pd.DataFrame], Any] | str,
) -> go.Figure:
    """Stacked monthly bars, one series per value of `by`; `bar` options that are functions
    are applied to each series' rows (e.g. customdata)."""
    fig = go.Figure()
    for index, (key, rows) in enumerate(frame.groupby(by, sort=True)):
        options = {k: v(rows) if callable(v) else v for k, v in bar.items()}
        fig.add_bar(
            x=_months(rows["month"]),
            y=values(rows),
            name=str(key),
            marker_color=SERIES_COLOURS[index % len(SERIES_COLOURS)],
            **options,
        )
    fig.update_layout(barmode="stack")
    _layout(fig, y_title=y_title)
    _month_axis(fig)
    return fig


def unallocated_by_reason(unallocated: pd.DataFrame) -> go.Figure:
    """Stacked monthly bars of the unallocated footprint (LBM) by reason."""
    return _stacked_monthly(
        unallocated,
        "reason",
        _column("total_lbm_kg", _tonnes),
        y_title=f"{TONNES} (location-based)",
        customdata=_column("total_mbm_kg", _tonnes),
        hovertemplate="%{x|%b %Y}: %{y:,.2f} t LBM, %{customdata:,.2f} t MBM",
    )


def estimated_share(coverage: pd.DataFrame) -> go.Figure:
    """Monthly share of energy that was estimated; provisional months drawn apart."""
    fig = go.Figure()
    kinds = ((False, "final", "#009E73"), (True, "provisional", "#CC79A7"))
    for provisional, name, colour in kinds:
        rows = coverage[coverage["provisional"].fillna(False).astype(bool) == provisional]
        if rows.empty:
            continue
        fig.add_bar(
            x=_months(rows["month"]),
            y=[100.0 * float(v) for v in rows["estimated_share"].fillna(0.0)],
            name=f"{name} month",
            marker_color=colour,
            hovertemplate="%{x|%b %Y}: %{y:.1f} % of energy estimated",
        )
    _layout(fig, y_title="% of energy estimated")
    fig.update_layout(showlegend=True)  # even with one kind of month: says which it is
    fig.update_yaxes(rangemode="tozero", ticksuffix=" %")
    _month_axis(fig)
    return fig


def factor_levels(levels: pd.DataFrame) -> go.Figure:
    """Stacked monthly bars: site-months per grid-factor level used."""
    whole = _column("site_months", lambda counts: [int(v) for v in counts])
    return _stacked_monthly(levels, "factor_level", whole, y_title="site-months")


def efficiency(frame: pd.DataFrame) -> go.Figure:
    """PUE and WUE per cluster (period ratios of sums), side by side."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        subplot_titles=("PUE (facility / IT energy)", "WUE (litres / IT kWh)"),
        horizontal_spacing=0.06,
    )
    clusters = list(frame["cluster_id"])
    fig.add_bar(
        y=clusters,
        x=[float(v) for v in frame["pue"]],
        orientation="h",
        name="PUE",
        marker_color=LBM_COLOUR,
        row=1,
        col=1,
    )
    fig.add_bar(
        y=clusters,
        x=[float(v) for v in frame["wue_l_per_kwh"].fillna(0.0)],
        orientation="h",
        name="WUE",
        marker_color="#56B4E9",
        row=1,
        col=2,
    )
    _layout(fig, height=min(640, max(HEIGHT, 90 + 26 * len(clusters))))
    fig.update_layout(showlegend=False)
    fig.update_xaxes(range=[1.0, max(1.05, float(frame["pue"].max()) * 1.02)], row=1, col=1)
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def service_intensity(rows: pd.DataFrame, unit: str) -> go.Figure:
    """One service's clusters ranked by kg CO2e per unit; estimated inputs hatched."""
    ranked = rows.sort_values(["lbm_kg_per_unit", "cluster_id"])
    columns = (ranked["cluster_id"], ranked["location"], ranked["estimated"])
    labels = [f"{c} ({loc}){' *' if est else ''}" for c, loc, est in zip(*columns, strict=True)]
    patterns = [ESTIMATED_PATTERN if est else "" for est in ranked["estimated"]]
    notes = [
        ("estimated energy" if est else "metered energy") + (", provisional" if prov else "")
        for est, prov in zip(ranked["estimated"], ranked["provisional"], strict=True)
    ]
    fig = go.Figure()
    for name, column, colour in (
        ("Location-based", "lbm_kg_per_unit", LBM_COLOUR),
        ("Market-based", "mbm_kg_per_unit", MBM_COLOUR),
    ):
        fig.add_bar(
            y=labels,
            x=[float(v) for v in ranked[column].fillna(0.0)],
            name=name,
            orientation="h",
            marker={"color": colour, "pattern": {"shape": patterns}},
            customdata=notes,
            hovertemplate=f"%{{y}}: %{{x:.4g}} kg CO2e per {unit} (%{{customdata}})",
        )
    fig.update_layout(barmode="group", bargap=0.25)
    _layout(fig, height=min(560, max(300, 90 + 40 * len(labels))), x_title=f"kg CO2e per {unit}")
    fig.update_yaxes(autorange="reversed", automargin=True)
    return fig


def forecast_fan(history: pd.DataFrame, forecast: pd.DataFrame, basis: str) -> go.Figure:
    """History and the forecast with its interval band."""
    total, lower, upper = f"total_{basis}_kg", f"{basis}_lower_kg", f"{basis}_upper_kg"
    name = "location-based" if basis == "lbm" else "market-based"
    colour = LBM_COLOUR if basis == "lbm" else MBM_COLOUR
    fig = go.Figure()
    if not forecast.empty:
        level = forecast["interval_level"].dropna()
        band = f"{100 * float(level.iloc[0]):.0f} % interval" if len(level) else "interval"
        x = _months(forecast["month"])
        fig.add_scatter(
            x=x,
            y=_tonnes(forecast[upper]),
            mode="lines",
            line={"width": 0},
            showlegend=False,
            hoverinfo="skip",
        )
        fig.add_scatter(
            x=x,
            y=_tonnes(forecast[lower]),
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(120,120,120,0.22)",
            name=band,
        )
        fig.add_scatter(
            x=x,
            y=_tonnes(forecast[total]),
            mode="lines",
            line={"color": colour, "dash": "dot", "width": 2},
            name=f"forecast ({name})",
        )
    fig.add_scatter(
        x=_months(history["month"]),
        y=_tonnes(history[total]),
        mode="lines+markers",
        line={"color": colour, "width": 3},
        name=f"actual ({name})",
    )
    _layout(fig, height=420, y_title=f"{TONNES} per month")
    fig.update_xaxes(type="date", tickformat="%b %Y")
    fig.update_layout(hovermode="x unified")
    fig.update_yaxes(rangemode="tozero")
    return fig


def target_path(series: pd.DataFrame, progress: TargetProgress) -> go.Figure:
    """A business unit's own monthly total on the target's basis, one line per methodology
    version (a change of version is not a change of emissions), and the target path drawn
    as monthly equivalents of its annual values."""
    total = f"total_{progress.basis}_kg"
    basis = "location-based" if progress.basis == "lbm" else "market-based"
    fig = go.Figure()
    own = series[series["business_unit"] == progress.business_unit]
    for index, (version, rows) in enumerate(own.groupby("model_version", sort=True)):
        fig.add_scatter(
            x=_months(rows["month"]),
            y=_tonnes(rows[total]),
            mode="lines+markers",
            line={"color": SERIES_COLOURS[index % len(SERIES_COLOURS)], "width": 3},
            name=f"{progress.business_unit}, {basis} ({version})",
        )
    if progress.path:
        fig.add_scatter(
            x=[dt.date(year, 7, 1).isoformat() for year, _ in progress.path],
            y=[kg / 12.0 / KG_PER_TONNE for _, kg in progress.path],
            mode="lines",
            line={"color": "#444444", "dash": "dash"},
            name=f"target path {progress.label}",
        )
    _layout(fig, height=360, y_title=f"{TONNES} per month")
    fig.update_xaxes(type="date", tickformat="%b %Y")
    fig.update_layout(hovermode="x unified")
    fig.update_yaxes(rangemode="tozero")
    return fig


def backtest(summary: pd.DataFrame) -> go.Figure:
    """Number of forecast series per backtest MAPE bucket, LBM and MBM."""
    order = [label for label, _ in MAPE_BUCKETS] + [MAPE_OVER, MAPE_MISSING]
    counts = summary.groupby(["basis", "bucket"], as_index=False)["series"].sum()
    fig = go.Figure()
    for basis, colour in (("LBM", LBM_COLOUR), ("MBM", MBM_COLOUR)):
        rows = counts[counts["basis"] == basis].set_index("bucket")["series"]
        fig.add_bar(
            x=order,
            y=[int(rows.get(bucket, 0)) for bucket in order],
            name=basis,
            marker_color=colour,
        )
    fig.update_layout(barmode="group")
    _layout(fig, y_title="series", x_title="backtest MAPE (hold-out months)")
    return fig
