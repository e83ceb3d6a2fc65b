"""Operator labels (POST /v1/labels) and the labels folders imported once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from service.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("image_type", sa.String(32)),
        sa.Column("image_bytes", sa.Integer),
        sa.Column("origin", sa.String(512),
                  comment="'api', or the labels.csv it was imported from"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_labels_sha256", "labels", ["sha256"])
    op.create_table(
        "label_imports",
        sa.Column("folder", sa.String(512), primary_key=True,
                  comment="a labels folder imported once"),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("label_imports")
    op.drop_table("labels")
