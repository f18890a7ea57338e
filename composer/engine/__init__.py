"""The engine: the long-running process that owns changes to the host, and its client.

``server`` is the HTTP + JSON API over a Unix socket, ``client`` what the CLI talks to it
with (``connect`` starts an engine on demand), ``daemon`` the process itself: its lock, pid
file, socket, start-up and shutdown. The container routes plug in through ``app.setup``.
"""
