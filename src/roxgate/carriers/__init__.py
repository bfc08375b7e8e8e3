"""Carrier connectors: how roxgate hands messages to the operators' SMS centres."""
