"""Data model: every table, the session, and the pure data rules shared by API and workers."""
from models.base import Base
from models.crm import AdvertisingCampaign, Request, RequestEvent, Transaction
from models.db import Session, configure, get_engine
from models.files import File
from models.lookups import City, Direction, RequestType, Role, TransactionType
from models.ops import Alert, AlertSilence, Job
from models.recordings import MailboxState, Recording
from models.rollups import ReportRollups, RequestDayStats, TransactionDayStats
from models.telephony import Call, CallLeg, MangoEvent
from models.users import User

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
