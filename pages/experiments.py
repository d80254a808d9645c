"""Experiments: each A/B-tested step's verdict in plain words, its intervals, plan progress and decision log."""

from __future__ import annotations

from datetime import UTC, datetime

import plotly.graph_objects as go
import streamlit as st
from sqlalchemy import Engine

from db.engine import transaction
from outreach import experiments
from outreach.errors import OutreachError
from outreach.sequence import Allocation, ExperimentDesign, ExperimentMetric
from outreach.stats import METRIC_WORDS, OPENS_WARNING, probability_best

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Experiments")
st.caption(
    "A step with two or more variants is an A/B test. Its verdict is read only when the planned sample is "
    "reached (or at the planned looks of a sequential design), so watching this page cannot bias it."
)

FLASH = "experiments_flash"
if FLASH in st.session_state:
    st.success(st.session_state.pop(FLASH))


@st.cache_data(ttl=30, show_spinner="Reading the experiments…")
def _reviews(db: str, _engine: Engine) -> list[experiments.StepReview]:
    """Two queries per A/B-tested step: cached briefly, so reruns of the page (widgets) do not repeat them."""
    with transaction(_engine, readonly=True) as session:
        return experiments.all_reviews(session)


reviews = _reviews(engine.url.render_as_string(hide_password=True), engine)


def _design(review: experiments.StepReview) -> str:
    s = review.settings
    design = (
        f"sequential, {s.looks} looks (Lan-DeMets O'Brien-Fleming alpha spending)"
        if s.design is ExperimentDesign.SEQUENTIAL
        else "fixed sample (one look at plan)"
    )
    allocation = "Thompson sampling" if s.allocation is Allocation.THOMPSON else "balanced"
    return (
        f"Metric {str(s.metric).replace('_', ' ')} · minimum detectable effect {s.mde * 100:g} points over a "
        f"{s.baseline * 100:g}% baseline · α {s.alpha:g} · power {s.power * 100:g}% · {design} · "
        f"allocation {allocation} · auto-promote {'on' if s.auto_promote else 'off'}"
    )


def _verdict(review: experiments.StepReview) -> None:
    analysis = review.analysis
    if analysis.status == "significant":
        st.success(analysis.explanation, icon=":material/check_circle:")
    elif analysis.status == "no_difference":
        st.warning(analysis.explanation, icon=":material/balance:")
    else:
        st.info(analysis.explanation, icon=":material/hourglass_top:")


def _progress(review: experiments.StepReview) -> None:
    analysis = review.analysis
    planned = analysis.planned_per_variant
    smallest = min((a.sent for a in review.arms), default=0)
    st.progress(
        min(smallest / planned, 1.0) if planned else 1.0,
        text=f"Smallest variant {smallest:,} of {planned:,} planned sends · power so far {analysis.power * 100:.0f}%",
    )


def _variants_table(review: experiments.StepReview) -> None:
    analysis = review.analysis
    word = METRIC_WORDS[str(review.settings.metric)]
    best = probability_best(list(review.arms)) if review.settings.allocation is Allocation.THOMPSON else {}
    rows = []
    for row in analysis.variants:
        name = row["name"]
        state = "stopped" if name in review.stopped else ("active" if review.active.get(name, True) else "removed")
        entry = {"variant": name, "assigned": state, "sent": row["sent"], "replied": row["replied"],
                 "rate": row["rate"], "ci low": row["ci_low"], "ci high": row["ci_high"],
                 "still needed": analysis.needed_per_variant.get(name, 0)}  # fmt: skip
        if best:
            entry["P(best)"] = best.get(name, 0.0)
        rows.append(entry)
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            "replied": st.column_config.NumberColumn(word),
            "rate": percent,
            "ci low": percent,
            "ci high": percent,
            "P(best)": percent,
        },
    )


def _interval_chart(review: experiments.StepReview) -> None:
    rows = review.analysis.variants
    level = (1 - review.settings.alpha) * 100
    title = f"{METRIC_WORDS[str(review.settings.metric)]} per sent touch, % ({level:g}% Wilson interval)"
    # The layout as nested dicts in the constructor: plotly's update_layout(xaxis_title=…) parses each
    # magic-underscore key, several milliseconds per chart, and the page draws one chart per A/B test.
    layout = {
        "xaxis": {"title": {"text": title}},
        "yaxis": {"type": "category", "autorange": "reversed"},
        "height": 120 + 40 * len(rows),
        "margin": {"t": 10, "b": 10},
    }
    chart = go.Figure(
        data=[
            go.Scatter(
                x=[r["rate"] * 100 for r in rows],
                y=[r["name"] for r in rows],
                mode="markers",
                marker={"size": 10},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [(r["ci_high"] - r["rate"]) * 100 for r in rows],
                    "arrayminus": [(r["rate"] - r["ci_low"]) * 100 for r in rows],
                },
            )
        ],
        layout=layout,
    )
    st.plotly_chart(chart, width="stretch", key=f"interval_{review.step_id}")


def _pairwise(review: experiments.StepReview) -> None:
    if not review.analysis.pairwise:
        return
    st.caption("Pairwise z-tests, Holm-corrected for the number of pairs")
    st.dataframe(
        [
            {"pair": f"{p.first} vs {p.second}", "p": p.p_value, "p (Holm)": p.p_holm, "significant": p.significant}
            for p in review.analysis.pairwise
        ],
        hide_index=True,
        width="stretch",
    )


def _decision_log(review: experiments.StepReview) -> None:
    if not review.decisions:
        st.caption("Decision log: nothing decided yet. Each look is recorded here once, when the worker reads it.")
        return
    st.caption("Decision log")
    st.dataframe(
        [
            {
                "when": d.created_at,
                "who": d.decided_by,
                "look": d.look,
                "decision": str(d.action).replace("_", " "),
                "winner": d.winner or "",
                "stopped": ", ".join(d.stopped),
                "p": d.p_value,
                "threshold": d.alpha,
                "why": d.reason,
            }
            for d in review.decisions
        ],
        hide_index=True,
        width="stretch",
        column_config={"when": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
    )


def _promote(review: experiments.StepReview) -> None:
    analysis = review.analysis
    waiting = sorted(set(analysis.losers) - review.stopped)
    if not analysis.significant or not waiting or review.settings.auto_promote:
        return
    label = f"Stop {', '.join(waiting)}" + (f" and send {analysis.winner}" if analysis.winner else "")
    if st.button(label, key=f"promote_{review.step_id}", help="Significant at plan: stop assigning the losers."):
        user = st.session_state["user"].username
        try:
            with transaction(engine) as session:
                experiments.promote(session, review.step_id, by=str(user), now=datetime.now(UTC))
        except OutreachError as exc:
            st.error(str(exc))
            return
        _reviews.clear()
        st.session_state[FLASH] = f"{', '.join(waiting)} stopped in {review.campaign}, step {review.position + 1}."
        st.rerun()


if not reviews:
    st.info(
        "No experiments yet. A campaign step with two or more variants is an A/B test: "
        "it appears here with each variant's sends and replies, intervals, and a verdict once the plan is reached. "
        "Set the test's metric, minimum detectable effect and design with the campaign's `experiment:` key."
    )
else:
    for found in reviews:
        with st.container(border=True):
            st.subheader(f"{found.campaign} · step {found.position + 1}")
            st.caption(f"{found.step_type} step · campaign {found.campaign_state} · {_design(found)}")
            if found.settings.metric is ExperimentMetric.OPEN_RATE:
                st.warning(OPENS_WARNING, icon=":material/warning:")
            _verdict(found)
            _progress(found)
            _variants_table(found)
            _interval_chart(found)
            _pairwise(found)
            _decision_log(found)
            _promote(found)

# --- Send-time recommendations ---

import plotly.graph_objects as _send_go  # noqa: E402 (this section keeps its own imports)

from outreach import send_time as _send_time  # noqa: E402

st.header("Send-time recommendations")
st.caption(
    "A logistic model of replies (and human opens) on the prospect's local hour and weekday at the send, "
    "shrunk toward the overall rate so thin hours cannot win by luck; refitted nightly by the worker. "
    "Campaigns with `schedule: {optimize_send_time: true}` send at the best-rated hour inside their own window "
    "(never outside it), and only once the model has enough data."
)
with transaction(engine, readonly=True) as _send_session:
    _send_fits = _send_time.load_model(_send_session)
if not _send_fits:
    st.info("No send-time model yet: the worker fits one from sent emails once a day (`outreach worker`).")
for _send_metric, _send_title in (("reply", "Replies"), ("open", "Human opens")):
    _send_fit = _send_fits.get(_send_metric)
    if _send_fit is None:
        continue
    st.subheader(_send_title)
    if not _send_fit.enough:
        st.info(f"No recommendation: {_send_fit.message}.")
        continue
    if _send_fit.best is not None and _send_fit.best.clearly_better:
        st.success(_send_fit.message[:1].upper() + _send_fit.message[1:] + ".")
    else:
        st.info(_send_fit.message[:1].upper() + _send_fit.message[1:] + ".")
    _send_hours = [
        {"local hour": f"{r.key:02d}:00", "sent": r.sent, _send_metric + "s": r.successes, "fitted rate": r.rate,
         "95% low": r.low, "95% high": r.high}
        for r in _send_fit.hours
    ]  # fmt: skip
    _send_figure = _send_go.Figure(
        _send_go.Scatter(
            x=[r.key for r in _send_fit.hours], y=[r.rate for r in _send_fit.hours], mode="markers",
            error_y={"type": "data", "symmetric": False, "array": [r.high - r.rate for r in _send_fit.hours],
                     "arrayminus": [r.rate - r.low for r in _send_fit.hours]},
        ),
        layout={  # what add_hline and update_layout(xaxis_title=…) made, without their per-key parsing
            "xaxis": {"title": {"text": "prospect's local hour"}},
            "yaxis": {"title": {"text": f"{_send_metric} rate"}, "tickformat": ".0%"},
            "height": 320,
            "shapes": [{"type": "line", "line": {"dash": "dot"}, "xref": "x domain", "x0": 0, "x1": 1,
                        "yref": "y", "y0": _send_fit.pooled_rate, "y1": _send_fit.pooled_rate}],
            "annotations": [{"text": "overall", "showarrow": False, "xref": "x domain", "x": 1, "xanchor": "right",
                             "yref": "y", "y": _send_fit.pooled_rate, "yanchor": "bottom"}],
        },
    )  # fmt: skip
    st.plotly_chart(_send_figure, key=f"send_time_chart:{_send_metric}")
    _send_percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        _send_hours, hide_index=True, width="stretch",
        column_config={"fitted rate": _send_percent, "95% low": _send_percent, "95% high": _send_percent},
    )  # fmt: skip
    st.dataframe(
        [
            {"weekday": _send_time.day_name(r.key), "sent": r.sent, _send_metric + "s": r.successes,
             "fitted rate": r.rate, "95% low": r.low, "95% high": r.high}
            for r in _send_fit.weekdays
        ],
        hide_index=True, width="stretch",
        column_config={"fitted rate": _send_percent, "95% low": _send_percent, "95% high": _send_percent},
    )  # fmt: skip
    if _send_fit.fitted_at is not None:
        st.caption(f"Fitted {_send_fit.fitted_at:%Y-%m-%d %H:%M} UTC on {_send_fit.sent} sends.")
