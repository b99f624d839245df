"""Hydra glue: composing configs outside the app (`compose`), the launch a job belongs to (`launch`), resolvers,
the SLURM launcher's schema, and the checks of user input with their `ConfigError` (`checks`). The only package
besides the job's setup (`src.jobs.build`) and the entry points whose functions take a `DictConfig`."""
