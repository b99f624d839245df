"""What a job needs around the pipeline (used by `src.run`, `src.demo` and `scripts/`): setup from the config
(`setup`), the classifier cache (`cache`), finished jobs brought back from disk (`artifacts`), resuming sweeps
(`sweeps`), config checks and resolvers. Modules are imported by name; nothing is re-exported here."""
