"""Data model: every table, the session, and the pure data rules shared by API and workers."""
from models.advertising.tables import CampaignSpend
from models.callbacks.tables import Callback, CallbackCall
from models.cash.tables import Transaction
from models.core.base import Base
from models.core.db import Session, configure, get_engine
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType, Role, TransactionType
from models.files.tables import File
from models.ops.tables import Alert, AlertSilence, Job
from models.people.tables import User
from models.recordings.tables import MailboxState, Recording
from models.reports.call_rollups import CallDayLinks, CallDayStats
from models.reports.digest import DigestRun
from models.reports.rollups import ReportRollups, RequestDayStats, TransactionDayStats
from models.requests.tables import Request, RequestEvent
from models.telegram.tables import TelegramBotState, TelegramLinkCode, TelegramOutbox
from models.telephony.tables import Call, CallLeg, MangoEvent

__all__ = [
    "AdvertisingCampaign",
    "Alert",
    "AlertSilence",
    "Base",
    "Call",
    "CallDayLinks",
    "CallDayStats",
    "CallLeg",
    "Callback",
    "CallbackCall",
    "CampaignSpend",
    "City",
    "DigestRun",
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
    "TelegramBotState",
    "TelegramLinkCode",
    "TelegramOutbox",
    "Transaction",
    "TransactionDayStats",
    "TransactionType",
    "User",
    "configure",
    "get_engine",
]
