"""The domain at the bottom: plain values shared by every room (Entra and SCIM facts, the planned
SCIM operations, journal records). It imports nothing of the reactor but :mod:`reactor.errors`."""
