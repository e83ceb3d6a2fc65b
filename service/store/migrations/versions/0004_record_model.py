"""Records name the models root's part whose version judged them (issue 28).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column(
            "model", sa.String(64),
            comment="the models root's part whose version judged; null from a server started "
                    "on one bundle"))
    op.create_index("ix_inspections_model", "inspections", ["model"])


def downgrade() -> None:
    op.drop_index("ix_inspections_model", "inspections")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("model")
