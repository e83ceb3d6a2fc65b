"""Kensa's HTTP service: FastAPI in front of the inspection core (``models``).

``service.app.create_app`` builds the app, ``service.app.run`` serves it (``kensa serve``).
"""
