"""Where the project's own files lie, in one place: a module that moves to another folder changes nothing here."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "config" / "schema.yaml"  # the config's schema: its checks and the only place of its defaults
