"""composer's DNS resolver: container names on each network's gateway, everything else forwarded.

It runs as its own small process (``python -m composer.dns``) so that names keep resolving
while the engine is down; the engine drives it through :class:`composer.dns.process.Resolver`
(a JSON config file replaced atomically, then SIGHUP). ``records`` is the pure part (config,
lookups), ``server`` the sockets and forwarding (the only module that imports dnslib).

Nothing is imported here: the engine imports ``process`` and the resolver's own start-up should
load only what it uses.
"""
