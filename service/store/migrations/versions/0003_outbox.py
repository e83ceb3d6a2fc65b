"""The outbox: records waiting for the sinks (webhook, MQTT), and how far each sink got.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from service.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True,
                  comment="delivery order: sinks deliver records in this order"),
        sa.Column("inspection_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ux_outbox_inspection_id", "outbox", ["inspection_id"], unique=True)
    op.create_table(
        "sink_positions",
        sa.Column("sink", sa.String(64), primary_key=True,
                  comment="a sink's name in KENSA_SINKS_FILE"),
        sa.Column("position", sa.Integer, nullable=False,
                  comment="the last outbox seq it is done with"),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sink_positions")
    op.drop_table("outbox")
