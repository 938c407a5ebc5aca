"""Data model: every table, the session, and the pure data rules shared by API and workers."""
from models.cash.tables import Transaction
from models.core.base import Base
from models.core.db import Session, configure, get_engine
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType, Role, TransactionType
from models.files.tables import File
from models.legacy.tables import LegacyMap
from models.ops.tables import Alert, AlertSilence, Job
from models.people.tables import User
from models.recordings.tables import MailboxState, Recording
from models.reports.rollups import ReportRollups, RequestDayStats, TransactionDayStats
from models.requests.tables import Request, RequestEvent
from models.telephony.tables import Call, CallLeg, MangoEvent

__all__ = [
    "AdvertisingCampaign",
    "Alert",
    "AlertSilence",
    "Base",
    "Call",
    "CallLeg",
    "City",
    "Direction",
    "File",
    "Job",
    "LegacyMap",
    "MailboxState",
    "MangoEvent",
    "Recording",
    "ReportRollups",
    "Request",
    "RequestDayStats",
    "RequestEvent",
    "RequestType",
    "Role",
    "Session",
    "Transaction",
    "TransactionDayStats",
    "TransactionType",
    "User",
    "configure",
    "get_engine",
]
