"""serve: run the local emulator."""
