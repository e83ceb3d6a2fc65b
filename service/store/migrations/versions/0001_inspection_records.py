"""Inspection records and their review history.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from service.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.String(36), primary_key=True,
                  comment="the inspect answer's id (UUID)"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(64)),
        sa.Column("part_id", sa.String(64)),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("label", sa.String(16), nullable=False, comment="normal | abnormal"),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("reconstruction", sa.JSON, nullable=False),
        sa.Column("latent", sa.JSON, nullable=False),
        sa.Column("defects", sa.JSON, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("elapsed_ms", sa.Float, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("image_kept", sa.Boolean, nullable=False),
        sa.Column("image_type", sa.String(32), comment="content type of the kept image"),
        sa.Column("image_bytes", sa.Integer),
        sa.Column("review_label", sa.String(64)),
        sa.Column("review_note", sa.Text),
        sa.Column("review_regions", sa.JSON),
        sa.Column("reviewed_by", sa.String(64)),
        sa.Column("reviewed_at", UTCDateTime()),
    )
    op.create_index("ix_inspections_created_at_id", "inspections", ["created_at", "id"])
    op.create_index("ix_inspections_source", "inspections", ["source"])
    op.create_index("ix_inspections_part_id", "inspections", ["part_id"])
    op.create_index("ix_inspections_sha256", "inspections", ["sha256"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.String(36),
                  sa.ForeignKey("inspections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("regions", sa.JSON),
        sa.Column("reviewed_by", sa.String(64)),
        sa.Column("reviewed_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_reviews_inspection_id", "reviews", ["inspection_id"])


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_table("inspections")
