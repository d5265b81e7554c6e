"""Run the whole system on one machine: local stand-ins plus a host that drives function_app."""
