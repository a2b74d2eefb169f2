"""Storage plugins for persistent_actors: one module per backend (journal and snapshot store)."""
