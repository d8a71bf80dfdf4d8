"""Launchers that run a study's grid somewhere other than this process. The local launcher is
reslab.study.run_study (this machine: in-process, or one process per device); `slurm` submits one job per run
to a SLURM cluster through submitit."""
