"""Alembic migrations of the store. HEAD_REVISION must name the newest file in versions/."""

HEAD_REVISION = "0009"
