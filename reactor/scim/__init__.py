"""AskCody's SCIM 2.0 endpoint: the client, the dialects' request forms, and the applier of plans."""

from reactor.scim.client import AskCodyClient, ScimError

__all__ = ["AskCodyClient", "ScimError", "apply_operations"]
