"""Alembic migrations of the records store, shipped inside the package (``kensa db upgrade``
works from an installed wheel or image)."""
