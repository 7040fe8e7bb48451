"""Storage below every domain: the database, its numbered migrations and transactions."""
