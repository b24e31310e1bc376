"""Primitives every layer above may use: files (io), names (naming), registries, the results layout, the
artifact and record contracts, config errors and checks, job threads, the Lightning trainer, seeded batches.
Imports nothing else of lightning_modules (docs/architecture.md, "Layers")."""
