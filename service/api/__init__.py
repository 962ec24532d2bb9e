"""The REST API under /api/v1: one router per resource (`routes`) and the JSON route class that parses request
bodies strictly (`json_route`)."""

__all__ = ["json_route", "routes"]
