"""Ways in: the CLI (and, with the service issue, REST, webhooks and chat)."""
