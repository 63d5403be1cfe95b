"""The sync engine: Entra facts + the mapping + what AskCody holds → SCIM operations, applied."""
