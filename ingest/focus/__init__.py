"""FOCUS import: parse a provider's export, attribute and flag its rows, and
insert them as charges (docs/architecture.md, "ingest")."""
