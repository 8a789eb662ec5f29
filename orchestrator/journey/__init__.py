"""The journey language: parse (YAML + schema), compile (checks + plans), catalog, validate."""
