"""On-premises usage priced by the site's rate card: Slurm and storage
readers, pricing, rates and account mappings, and the converters that import
the priced rows as FOCUS (docs/architecture.md, "ingest")."""
