"""Multi-user chat (XEP-0045): the MUC service, its rooms and their occupants."""
