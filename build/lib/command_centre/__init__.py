"""Command Centre tools: receive, verify and decrypt what the boxes send; manage the fleet."""
