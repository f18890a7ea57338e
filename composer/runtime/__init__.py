"""The runtime: images, containers, networks and volumes on the host (interfaces in base.py)."""
