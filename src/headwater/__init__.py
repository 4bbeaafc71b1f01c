"""Headwater: any SQLite or PostgreSQL database as a fast, cached REST API in PostgREST's
dialect."""

from headwater.config import Settings
from headwater.errors import HeadwaterError, Rejected
from headwater.events.event import Event
from headwater.model.principal import Principal
from headwater.service.hooks import App, Context

__all__ = ["App", "Context", "Event", "HeadwaterError", "Principal", "Rejected", "Settings"]
__version__ = "0.1.0"
