"""The versioned REST API (``/api/v1``) for analysts, admins and integrations."""
