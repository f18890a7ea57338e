"""composer's port proxy: the IPv6 side of published ports, relayed to IPv4-only containers.

The IPv4 side of a published port is kernel NAT (:mod:`composer.runtime.nat`); the kernel
cannot translate IPv6 to IPv4 nor route ``::1`` out of ``lo``, so, as Docker does with
docker-proxy, a process of ours listens on the IPv6 side and relays. It runs on its own
(``python -m composer.portproxy DIRECTORY``) so that published ports keep working while the
engine is down; the engine drives it through :class:`composer.portproxy.process.PortProxy`
(a JSON config file replaced atomically, then SIGHUP, as :mod:`composer.sidecar` describes).
``config`` is the pure part, ``proxy`` the sockets.

Nothing is imported here: the engine imports ``process`` and the proxy's own start-up should
load only what it uses.
"""
