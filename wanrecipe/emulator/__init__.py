"""The local DashScope image-edit server (see docs/architecture.md)."""
