"""The records schema (SQLAlchemy Core). Change it only together with a new migration in
``migrations/versions``; ``tests/service/store/test_database.py`` checks both agree."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UTCDateTime(TypeDecorator):
    """A UTC time, stored without a zone (SQLite has none) and read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value is not None else None


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = MetaData()

inspections = Table(
    "inspections", metadata,
    Column("id", String(36), primary_key=True, comment="the inspect answer's id (UUID)"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("source", String(64)),
    Column("part_id", String(64)),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("model", String(64), comment="the models root's part whose version judged; "
                                        "null from a server started on one bundle"),
    Column("label", String(16), nullable=False, comment="normal | abnormal"),
    Column("score", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("reconstruction", JSON, nullable=False),
    Column("latent", JSON, nullable=False),
    Column("defects", JSON, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("elapsed_ms", Float, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("image_kept", Boolean, nullable=False, default=False),
    Column("image_type", String(32), comment="content type of the kept image"),
    Column("image_bytes", Integer),
    Column("review_label", String(64)),
    Column("review_note", Text),
    Column("review_regions", JSON),
    Column("reviewed_by", String(64)),
    Column("reviewed_at", UTCDateTime),
    Index("ix_inspections_created_at_id", "created_at", "id"),
    Index("ix_inspections_source", "source"),
    Index("ix_inspections_part_id", "part_id"),
    Index("ix_inspections_sha256", "sha256"),
    Index("ix_inspections_model", "model"),
)

reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("inspection_id", String(36), ForeignKey("inspections.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("note", Text),
    Column("regions", JSON),
    Column("reviewed_by", String(64)),
    Column("reviewed_at", UTCDateTime, nullable=False),
)

labels = Table(
    "labels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("image_type", String(32)),
    Column("image_bytes", Integer),
    Column("origin", String(512), comment="'api', or the labels.csv it was imported from"),
    Column("created_at", UTCDateTime, nullable=False),
)

label_imports = Table(
    "label_imports", metadata,
    Column("folder", String(512), primary_key=True, comment="a labels folder imported once"),
    Column("rows", Integer, nullable=False),
    Column("imported_at", UTCDateTime, nullable=False),
)

outbox = Table(
    "outbox", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True,
           comment="delivery order: sinks deliver records in this order"),
    Column("inspection_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ux_outbox_inspection_id", "inspection_id", unique=True),
)

sink_positions = Table(
    "sink_positions", metadata,
    Column("sink", String(64), primary_key=True, comment="a sink's name in KENSA_SINKS_FILE"),
    Column("position", Integer, nullable=False, comment="the last outbox seq it is done with"),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("holder", String(128), comment="the server delivering this sink now"),
    Column("lease_until", Float, comment="database clock (epoch s) when its lease ends"),
)
