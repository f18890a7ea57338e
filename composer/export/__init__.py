"""Exporters: the loaded project written for other orchestrators (``composer convert ...``)."""
