"""The export command (`python -m export`), the TF Serving kit (configs, README) and its client."""
