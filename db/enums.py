"""Status and kind values: one StrEnum per column; DESIGN.md lists the allowed moves."""

from __future__ import annotations

from enum import StrEnum


class UserRole(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class ApiScope(StrEnum):
    READ = "read"
    WRITE = "write"


class CampaignState(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    ARCHIVED = "archived"


class StepType(StrEnum):
    EMAIL = "email"
    LINKEDIN = "linkedin"
    CALL = "call"


class DelayUnit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    BUSINESS_DAYS = "business_days"


class StepCondition(StrEnum):
    ALWAYS = "always"
    NO_REPLY = "no_reply"
    NO_OPEN = "no_open"
    OPENED = "opened"
    CLICKED = "clicked"


class EnrollmentState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"


class StopReason(StrEnum):
    REPLIED = "replied"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    SUPPRESSED = "suppressed"
    OPERATOR = "operator"
    DOMAIN_REPLIED = "domain_replied"


class TouchState(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    RETRY_WAIT = "retry_wait"
    FAILED = "failed"
    BOUNCED = "bounced"
    IN_DOUBT = "in_doubt"
    CANCELLED = "cancelled"


TERMINAL_TOUCH_STATES = frozenset({TouchState.SENT, TouchState.FAILED, TouchState.BOUNCED, TouchState.CANCELLED})


class EventKind(StrEnum):
    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"


class ResponseKind(StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNMATCHED = "unmatched"


class Intent(StrEnum):
    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    OUT_OF_OFFICE = "out_of_office"
    UNSUBSCRIBE = "unsubscribe"
    REFERRAL = "referral"
    QUESTION = "question"
    OTHER = "other"


class LeadStage(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    ENGAGED = "engaged"
    REPLIED = "replied"
    INTERESTED = "interested"
    MEETING = "meeting"
    WON = "won"
    LOST = "lost"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    DO_NOT_CONTACT = "do_not_contact"


class SuppressionKind(StrEnum):
    EMAIL = "email"
    DOMAIN = "domain"


class SuppressionReason(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    FORGOTTEN = "forgotten"


class MailboxState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


class TlsMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class TaskType(StrEnum):
    LINKEDIN = "linkedin"
    CALL = "call"


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"
    SKIPPED = "skipped"


class WebhookDeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its first try or a retry
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last retry


class ExperimentAction(StrEnum):
    """What a look at an A/B test decided (the Experiments page's decision log)."""

    CONTINUE = "continue"  # an interim look crossed no boundary: keep collecting
    WINNER = "winner"  # significant at plan; every variant keeps being assigned
    PROMOTED = "promoted"  # significant at plan; the losers stop being assigned
    NO_DIFFERENCE = "no_difference"  # the plan is reached and the test is not significant
