"""One repository module per collection. Repositories take and return ``aml`` domain types."""
