"""The event store: `EventStore` (eventstore.py) and the schema, writers and queries it owns."""
