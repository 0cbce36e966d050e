"""Shared code of hilos-runner: models, settings, the Hilos client, token and execution store."""
