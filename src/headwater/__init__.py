"""Headwater: any SQLite or PostgreSQL database as a fast, cached REST API in PostgREST's
dialect."""

from headwater.config import Settings
from headwater.errors import HeadwaterError

__all__ = ["HeadwaterError", "Settings"]
__version__ = "0.1.0"
