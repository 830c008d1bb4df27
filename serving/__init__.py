"""Real-time serving support for service.py: settings and HTTP error handling."""
