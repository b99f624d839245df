"""Everything on disk that outlives a job, as short files on three helpers: one file lock (`lock`), one atomic
write and atomic directory (`atomic`), one keyed directory with its digest and folder-name rule (`keyed`).
The stores: trained classifiers (`classifiers`), pretrained weights (`pretrained`), finished jobs and their
resume rule (`finished_jobs`), training checkpoints (`train_checkpoints`), seed exports' manifests
(`export_manifest`); which classifier made an artifact (`identity`); and the one declaration of the config keys
that change no result (`result_neutral`). Nothing here knows models, CAMs or ranks (an evaluation's own
checkpoint holds metric states, so it lives with the evaluation). Modules are imported by name; nothing is
re-exported here."""
