"""Study records in a SQL database (SQLite by default, PostgreSQL by URL), through SQLAlchemy 2 and Alembic.

The service writes a study when it is submitted; the driver (a Ray job) writes its progress and results;
neither keeps study state in memory, so either can restart at any time.
"""

from studies.records._models import Base, Study, StudyStatus, utcnow
from studies.records._store import RecordStore, migrate

__all__ = ["Base", "RecordStore", "Study", "StudyStatus", "migrate", "utcnow"]
