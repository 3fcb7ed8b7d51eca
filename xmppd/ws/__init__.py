"""XMPP over WebSocket (RFC 7395): the endpoint and its client streams."""
