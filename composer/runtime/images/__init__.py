"""The image store, registries and archives: content-addressed blobs, layers, references."""
