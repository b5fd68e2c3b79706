"""The recorder: consumes the tap queue and stores every event, acking only after commit."""
