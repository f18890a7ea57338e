"""``composer watch``: the inner development loop.

watchdog events -> filter (:mod:`rules`) -> debounce (:mod:`debounce`) -> either "reload the
manifest and reconcile the project" or the ``develop.watch`` actions of the services whose
rules matched (:mod:`loop`). This package decides what to do; the side effects (applying a
project, syncing files into a container, restarting, rebuilding) go through the small
:class:`~composer.watch.loop.Effects` protocol, which the CLI implements over the engine: the
engine stays the only component that changes the host.
"""
