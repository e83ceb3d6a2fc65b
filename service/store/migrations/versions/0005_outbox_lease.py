"""The sinks' lease: which server delivers a sink now, and until when.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sink_positions") as batch:
        batch.add_column(sa.Column("holder", sa.String(128), nullable=True,
                                   comment="the server delivering this sink now"))
        batch.add_column(sa.Column("lease_until", sa.Float, nullable=True,
                                   comment="database clock (epoch s) when its lease ends"))


def downgrade() -> None:
    with op.batch_alter_table("sink_positions") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("holder")
