"""The worker fleet: consumer-group workers that move events from the stream into storage."""
