"""Demo PDFs: stored in the data dir next to their DemoAsset, attached to a step's email when it asks.

A step with `attach_demo: true` carries, as a PDF attachment, the file of the demo the generator matched
to the prospect's company (the same match that fills `{{ demo_link }}` / `{{ demo_title }}`). No match or
a demo without a file: nothing is attached (the step's fallback text covers the message). A file that
has gone missing or grew past the limit fails that one touch with the reason — a message that promises
an attachment never goes out without it. The limit (default 5 MB, `OUTREACH_MAX_ATTACHMENT_BYTES`) is
checked when a file is stored and again when it is attached.

The preview and the send path both call `attachments_for`, so the preview shows what is sent.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import CommunicationLog, DemoAsset, Enrollment, OutreachCampaign, Prospect, SequenceStep
from outreach.errors import OutreachError
from outreach.generator import DEMO_FIELDS, generator_for, prospect_context
from outreach.mailer import Attachment, MessageError
from outreach.sequence import Definition
from outreach.templating import values_of

MAX_BYTES_ENV = "OUTREACH_MAX_ATTACHMENT_BYTES"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEMO_SUBDIR = "demos"
PDF_MAGIC = b"%PDF-"
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]+")


class DemoFileError(OutreachError):
    """A demo file cannot be stored as given (not a PDF, too big, no such demo)."""


def max_attachment_bytes(env: dict[str, str] | None = None) -> int:
    value = (os.environ if env is None else env).get(MAX_BYTES_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return max(int(value), 1)
    except ValueError:
        raise DemoFileError(f"{MAX_BYTES_ENV} must be a number of bytes, got '{value}'") from None


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def attachment_name(title: str) -> str:
    """The file name recipients see: the demo's title, made safe for a header and a file system."""
    stem = " ".join(_UNSAFE.sub(" ", title).split())[:80].strip(" .") or "demo"
    return f"{stem}.pdf"


def save_demo_file(session: Session, demo_id: int, data: bytes, data_dir: Path, *, max_bytes: int | None = None) -> str:
    """Store a PDF for a demo (replacing its previous one); returns the path stored, relative to the data dir."""
    demo = session.get(DemoAsset, demo_id)
    if demo is None:
        raise DemoFileError(f"no demo with id {demo_id}")
    limit = max_attachment_bytes() if max_bytes is None else max_bytes
    if not data.startswith(PDF_MAGIC):
        raise DemoFileError(f"the file for '{demo.title}' is not a PDF (it does not start with %PDF-)")
    if len(data) > limit:
        raise DemoFileError(
            f"the file for '{demo.title}' is {_megabytes(len(data))}; attachments may be at most {_megabytes(limit)} "
            f"({MAX_BYTES_ENV})"
        )
    relative = f"{DEMO_SUBDIR}/{demo.id}-{hashlib.sha256(data).hexdigest()[:16]}.pdf"
    target = data_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".part")
    temporary.write_bytes(data)
    temporary.replace(target)
    previous = demo.file_path
    demo.file_path, demo.file_size = relative, len(data)
    session.flush()
    if previous and previous != relative:
        _remove(data_dir, previous)
    return relative


def remove_demo_file(session: Session, demo_id: int, data_dir: Path) -> None:
    demo = session.get(DemoAsset, demo_id)
    if demo is None or not demo.file_path:
        return
    _remove(data_dir, demo.file_path)
    demo.file_path, demo.file_size = None, None
    session.flush()


def _remove(data_dir: Path, relative: str) -> None:
    path = (data_dir / relative).resolve()
    if path.parent == (data_dir / DEMO_SUBDIR).resolve():  # only ever a file inside the demos folder
        path.unlink(missing_ok=True)


# --- attaching -------------------------------------------------------------------------------------


def matched_demo(session: Session, campaign: OutreachCampaign, prospect: Prospect) -> DemoAsset | None:
    """The demo the generator picks for this prospect's company (the one `{{ demo_link }}` shows)."""
    chosen = generator_for(session, campaign).attach_demos(values_of(prospect_context(prospect)), wanted=DEMO_FIELDS)
    title, link = chosen.values.get("demo_title"), chosen.values.get("demo_link")
    if title is None:
        return None
    return session.scalar(
        select(DemoAsset).where(DemoAsset.title == title, DemoAsset.url == link).order_by(DemoAsset.id).limit(1)
    )


def attachments_for(
    session: Session,
    campaign: OutreachCampaign,
    definition: Definition,
    step_index: int,
    prospect: Prospect,
    data_dir: Path,
    *,
    max_bytes: int | None = None,
) -> tuple[Attachment, ...]:
    """What one step's email carries for one prospect: the matched demo's PDF, or nothing."""
    if not definition.steps[step_index].attach_demo:
        return ()
    demo = matched_demo(session, campaign, prospect)
    if demo is None or not demo.file_path:
        return ()
    limit = max_attachment_bytes() if max_bytes is None else max_bytes
    path = data_dir / demo.file_path
    try:
        size = path.stat().st_size
        if size > limit:
            raise MessageError(
                f"the demo file for '{demo.title}' is {_megabytes(size)}, over the {_megabytes(limit)} limit"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise MessageError(
            f"the demo file for '{demo.title}' cannot be read ({exc.strerror}); upload it again"
        ) from None
    return (Attachment(attachment_name(demo.title), data),)


def touch_attachments(engine: Engine, definition: Definition, touch_id: int, data_dir: Path) -> tuple[Attachment, ...]:
    """The send path's call: nothing to read unless the campaign has a step that attaches its demo."""
    if not any(step.attach_demo for step in definition.steps):
        return ()
    with transaction(engine, readonly=True) as session:
        row = session.execute(
            select(SequenceStep.position, OutreachCampaign, Prospect)
            .select_from(CommunicationLog)
            .join(SequenceStep, SequenceStep.id == CommunicationLog.step_id)
            .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
            .join(OutreachCampaign, OutreachCampaign.id == Enrollment.campaign_id)
            .join(Prospect, Prospect.id == Enrollment.prospect_id)
            .where(CommunicationLog.id == touch_id)
        ).first()
        if row is None or row.position >= len(definition.steps):
            return ()
        return attachments_for(session, row.OutreachCampaign, definition, row.position, row.Prospect, data_dir)


def demo_file_size(session: Session, demo_id: int) -> int | None:
    """The stored PDF's size in bytes, or None when the demo has no file (the Preview page's demo form)."""
    demo = session.get(DemoAsset, demo_id)
    return demo.file_size if demo is not None and demo.file_path else None
