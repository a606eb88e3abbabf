"""The store: SQLAlchemy models, engine, migrations and the recorders that write runs and evals."""
