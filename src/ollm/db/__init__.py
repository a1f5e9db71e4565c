"""Chat history and accounts in SQL: models, schemas, sessions, CRUD, migrations, search.

Only the service layer imports this package; routes go through services. At start-up:
``app.state.database = await Database.open(settings.database_url)``.
"""

from ollm.db.database import Database
from ollm.db.migrate import upgrade_database
from ollm.db.session import create_engine, create_sessionmaker

__all__ = ["Database", "create_engine", "create_sessionmaker", "upgrade_database"]
