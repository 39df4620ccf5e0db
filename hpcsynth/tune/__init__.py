"""Tuning studies (`hpcsynth tune`): Optuna searches over job-file keys, every trial a normal hpcsynth job.

`study_file` reads and validates the study file; `trial` turns one set of values into a job, runs it and scores
it (and, when the study prunes, watches its per-round scores and stops it); `iorbo` is the rank-based sampler
(`sampler: iorbo`); `search` holds the Optuna study (a journal file beside the results, so parallel workers share
it) and runs the workers; `results` gathers the trials into the study HDF5 file.
"""
