"""Run records, progress events and their renderings."""
