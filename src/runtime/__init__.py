"""What a job runs on: its ranks and their collectives, one protocol for every stage (`ranks`), a failing rank
(`rank_failure`), SLURM's requeue signal (`preemption`), its phases' wall clock (`timings`), its log lines
(`logs`), and Lightning's progress bar and console noise (`progress`, `lightning_noise`). Modules are imported by
name; nothing is re-exported here."""
