"""Deploy Guard: guarded Kubernetes rollouts, promoted or rolled back on Prometheus evidence."""

__version__ = "0.1.0"
