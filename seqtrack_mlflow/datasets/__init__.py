"""Where the data comes from: the dataset interface and registry, the readers, the hub download, the
synthetic generator, the cache, and the selection a run uses (see registry.py)."""
