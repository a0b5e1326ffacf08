"""memsync's benchmark suite: `make bench` (`python -m bench`). Figures, never timed assertions."""
