"""AskCody Entra reactor: Entra ID changes to AskCody over SCIM in seconds."""

__version__ = "0.1.0"
