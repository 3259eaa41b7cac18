"""gear-hpc: Gear compute containers on ordinary Slurm clusters."""

__version__ = "0.1.0"
