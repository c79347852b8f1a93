"""What runs ON the VPS, not in CHOM: `vpsmanager.py`, the agent shipped (checksum-verified) to
every server by `fleet.remote.agent_client` and run there by root's python3 (3.9+, standard
library only). Nothing in CHOM imports it; the client reads its source to ship it.
"""
