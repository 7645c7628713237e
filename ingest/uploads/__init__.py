"""Files that reach the importer through the admin (staged uploads, their
previews and batch page) or the inbox folder (docs/architecture.md, "ingest")."""
