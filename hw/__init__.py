"""Hardware adapters (lock-in drivers, controllers, simulated twins) as pluggy plugins."""
