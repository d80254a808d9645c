"""`outreach demo`: build a separate demo workspace and say how to open it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from outreach.cli import JsonFlag, emit, user_errors
from outreach.demo import DEFAULT_DIR, DEFAULT_PROSPECTS, DEFAULT_SEED, build_demo


@user_errors
def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="A new folder for the demo workspace (never your real one).")
    ] = Path(DEFAULT_DIR),
    seed: Annotated[int, typer.Option(help="Seed of the generator: the same seed gives the same workspace.")] = (
        DEFAULT_SEED
    ),
    prospects: Annotated[int, typer.Option(min=100, max=100_000, help="How many prospects to generate.")] = (
        DEFAULT_PROSPECTS
    ),
    as_json: JsonFlag = False,
) -> None:
    """Build a demo workspace: generated prospects, campaigns and a month of engagement, labelled DEMO."""
    summary = build_demo(data_dir, seed=seed, prospects=prospects)
    where = summary.data_dir
    lines = [
        f"Demo workspace built in {where}: {summary.prospects:,} prospects, {summary.campaigns} campaigns, "
        f"{summary.touches:,} touches, {summary.opens:,} opens, {summary.clicks:,} clicks, "
        f"{summary.replies:,} replies, {summary.bounces:,} bounces, {summary.tasks:,} tasks.",
        "Open it with:",
        f"  OUTREACH_DATA_DIR={where} outreach up",
        "(`up` creates the dashboard user admin and prints its password once.) Your real workspace is untouched.",
    ]
    if os.environ.get("OUTREACH_DATABASE_URL"):
        lines.append("OUTREACH_DATABASE_URL is set: unset it for that command, or `up` opens that database instead.")
    emit({**summary.to_json(), "open_with": f"OUTREACH_DATA_DIR={where} outreach up"}, as_json, "\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
