"""The model zoo: architectures, a registry of shipped models (weights + cards), training."""
