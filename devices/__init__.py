"""What runs on or stands in for a device. Packaged as `edgeprune._devices` (see pyproject.toml)."""
