"""The built-in templates: the issue (MJML and text) and what `digest init` writes."""
