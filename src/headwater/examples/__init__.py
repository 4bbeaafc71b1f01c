"""Runnable example apps: ``headwater serve --demo --app headwater.examples.audit``."""
