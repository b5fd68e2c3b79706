"""The event store: schema, engine, batch writer and read queries."""
