"""XMPP over BOSH (XEP-0124, XEP-0206): the endpoint, its sessions and their bodies."""
